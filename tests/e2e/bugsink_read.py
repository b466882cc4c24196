"""Read back what a test instance of Bugsink stored.

Used as a module by bugsink_check.py and as a command when debugging:

    python3 bugsink_read.py events DB      one JSON line per stored event
    python3 bugsink_read.py envelopes DB   one JSON line per kept raw envelope
    python3 bugsink_read.py mark DB        current high-water marks, as JSON

DB is the instance's db.sqlite3. Bugsink keeps it in WAL mode, so reading
while the server runs is safe. Raw envelopes are kept only with
BUGSINK["KEEP_ENVELOPES"] > 0; they are the only place where attachments and
Crons check-ins can be seen, since Bugsink accepts and then drops both.
"""

import json
import sqlite3
import sys


def connect(db_path):
    """Open the instance database read-only."""
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def mark(db):
    """High-water marks, taken between runs to tell their records apart."""
    events = db.execute("SELECT COUNT(*) FROM events_event").fetchone()[0]
    envelope = db.execute("SELECT COALESCE(MAX(id), 0) FROM ingest_envelope").fetchone()[0]
    return {"events": events, "envelope_id": envelope}


def events(db):
    """Every stored event in digest order, with its issue, grouping and tags."""
    rows = db.execute(
        """
        SELECT e.id, e.event_id, e.issue_id, g.grouping_key, g.grouping_mechanism,
               e.environment, e.release, e.level, e.data
        FROM events_event e JOIN issues_grouping g ON g.id = e.grouping_id
        ORDER BY e.digested_at, e.project_digest_order
        """
    ).fetchall()
    out = []
    for pk, event_id, issue_id, gkey, gmech, env, rel, level, data in rows:
        tags = dict(
            db.execute(
                """
                SELECT k.key, v.value FROM tags_eventtag et
                JOIN tags_tagvalue v ON v.id = et.value_id
                JOIN tags_tagkey k ON k.id = v.key_id
                WHERE et.event_id = ?
                """,
                (pk,),
            )
        )
        out.append(
            {
                "event_id": event_id,
                "issue_id": issue_id,
                "grouping_key": gkey,
                "grouping_mechanism": gmech,
                "environment": env,
                "release": rel,
                # The Rust SDK leaves out "error", the protocol default.
                "level": level or "error",
                "tags": tags,
                "data": json.loads(data),
            }
        )
    return out


def parse_envelope(raw):
    """Split a raw envelope into its header and a list of (item header, payload bytes)."""

    def line_end(pos):
        end = raw.find(b"\n", pos)
        return len(raw) if end < 0 else end

    end = line_end(0)
    headers = json.loads(raw[:end] or b"{}")
    items = []
    pos = end + 1
    while pos < len(raw):
        end = line_end(pos)
        line, pos = raw[pos:end], end + 1
        if not line.strip():
            continue
        item = json.loads(line)
        if "length" in item:
            payload = raw[pos : pos + item["length"]]
            pos += item["length"] + 1
        else:
            end = line_end(pos)
            payload, pos = raw[pos:end], end + 1
        items.append((item, payload))
    return headers, items


def envelopes(db):
    """Every kept envelope as (id, raw bytes, header, items), oldest first."""
    out = []
    for pk, data in db.execute("SELECT id, data FROM ingest_envelope ORDER BY id"):
        raw = bytes(data)
        headers, items = parse_envelope(raw)
        out.append((pk, raw, headers, items))
    return out


def _payload_json(payload):
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("events", "envelopes", "mark"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    db = connect(argv[2])
    if argv[1] == "mark":
        print(json.dumps(mark(db)))
    elif argv[1] == "events":
        for event in events(db):
            print(json.dumps(event, ensure_ascii=False))
    else:
        for pk, _raw, headers, items in envelopes(db):
            shown = [{"header": h, "payload": _payload_json(p)} for h, p in items]
            print(json.dumps({"id": pk, "header": headers, "items": shown}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
