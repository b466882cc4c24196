"""Assert that Bugsink stored what SPEC.md section 5 promises.

usage: bugsink_check.py WORK_DIR

WORK_DIR is the directory of one bugsink.sh run. It holds the Bugsink
instance (db.sqlite3 and friends), `secret` (the admin secret given to the
binary), `version` (from Cargo.toml) and `runs.jsonl`, one line per run of the
binary:

    {"name": "first", "kind": "inconsistent" | "failed" | "consistent" | "probe",
     "endpoint": "http://127.0.0.1:PORT", "objects": FILE or null,
     "before": MARK, "after": MARK}

MARK is bugsink_read.mark() taken just before and after the run, which tells
the records of one run from those of the next. Each check prints `ok - …` or
`not ok - …` on stdout; bugsink.sh counts them. The exit code is 1 when any
check failed.
"""

import json
import os
import re
import sys
from urllib.parse import urlsplit

import bugsink_read

MONITOR = "e2e-monitor"
ENVIRONMENT = "e2e"
ATTACHMENT = "inconsistent_objects.json"


class Checks:
    """Collects results and prints one line per check."""

    def __init__(self, secret):
        self.failed = 0
        self.secret = secret

    def check(self, label, ok, detail=""):
        if ok:
            print(f"ok - {label}")
        else:
            self.failed += 1
            # A leaked secret is reported by the secret checks, not echoed.
            detail = detail.replace(self.secret, "<admin secret>")
            print(f"not ok - {label}" + (f": {detail}" if detail else ""))
        return ok


def short(value, limit=300):
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def object_name(obj):
    """The object's `name`, or None.

    SPEC.md section 5 groups nameless objects by type and reason, or reason,
    without fixing how the two are joined; the checks look for each part.
    """
    return str(obj["name"]) if obj.get("name") else None


def in_order(haystack, needles):
    """True when every needle occurs in haystack, each after the previous one."""
    pos = 0
    for needle in needles:
        found = haystack.find(needle, pos)
        if found < 0:
            return False
        pos = found + len(needle)
    return True


def split_run(events, envelopes, run):
    lo, hi = run["before"], run["after"]
    evs = events[lo["events"] : hi["events"]]
    envs = [e for e in envelopes if lo["envelope_id"] < e[0] <= hi["envelope_id"]]
    return evs, envs


def items_of(envs, kind):
    return [(h, p) for _pk, _raw, _hdr, items in envs for h, p in items if h.get("type") == kind]


def check_checkins(c, run, envs, final):
    label = run["name"]
    checkins = [json.loads(p) for _h, p in items_of(envs, "check_in")]
    ours = [ci for ci in checkins if ci.get("monitor_slug") == MONITOR]
    statuses = [ci.get("status") for ci in ours]
    c.check(
        f"{label}: check-ins for {MONITOR} are in_progress then {final}",
        statuses == ["in_progress", final],
        f"statuses {statuses}, all check-ins {short(checkins)}",
    )
    if len(ours) == 2:
        c.check(
            f"{label}: both check-ins share one check_in_id",
            ours[0].get("check_in_id") == ours[1].get("check_in_id"),
            short([ci.get("check_in_id") for ci in ours]),
        )
        c.check(
            f"{label}: the closing check-in has a duration",
            isinstance(ours[1].get("duration"), (int, float)),
            short(ours[1]),
        )


def check_common(c, run, event, version, exc_type):
    label = run["name"]
    data = event["data"]
    c.check(f"{label}: level is error", event["level"] == "error", event["level"])
    c.check(
        f"{label}: environment is {ENVIRONMENT}",
        event["environment"] == ENVIRONMENT,
        repr(event["environment"]),
    )
    release = f"hasura-metadata-reloader@{version}"
    c.check(f"{label}: release is {release}", event["release"] == release, repr(event["release"]))
    values = (data.get("exception") or {}).get("values") or []
    types = [v.get("type") for v in values]
    c.check(
        f"{label}: exception type is {exc_type}",
        bool(types) and types[-1] == exc_type,
        f"exception types {types}",
    )
    c.check(
        f"{label}: grouped by an explicit fingerprint",
        event["grouping_mechanism"] == "none" and isinstance(data.get("fingerprint"), list),
        f"mechanism {event['grouping_mechanism']!r}, fingerprint {short(data.get('fingerprint'))}",
    )
    return values[-1] if values else {}


def check_inconsistent(c, run, evs, envs, version):
    label = run["name"]
    if not c.check(f"{label}: exactly one event stored", len(evs) == 1, f"{len(evs)} events"):
        return None
    event = evs[0]
    data = event["data"]
    with open(run["objects"], encoding="utf-8") as f:
        objects = json.load(f)["inconsistent_objects"]
    host = urlsplit(run["endpoint"]).hostname

    exc = check_common(c, run, event, version, "MetadataInconsistent")
    value = str(exc.get("value", ""))
    names = [object_name(o) for o in objects]
    c.check(
        f"{label}: exception value names the count and an object",
        re.search(rf"\b{len(objects)}\b", value) and any(n and n in value for n in names),
        repr(value),
    )

    key = event["grouping_key"]
    c.check(
        f"{label}: grouping key starts with hasura-metadata-inconsistent",
        key.startswith("hasura-metadata-inconsistent"),
        repr(key),
    )
    c.check(f"{label}: grouping key contains the host {host}", host in key, repr(key))
    fingerprint = data.get("fingerprint") or []
    c.check(
        f"{label}: fingerprint opens with hasura-metadata-inconsistent and the host",
        fingerprint[:2] == ["hasura-metadata-inconsistent", host],
        short(fingerprint),
    )
    named = sorted(n for n in names if n)
    c.check(
        f"{label}: grouping key holds the sorted object names",
        in_order(key, named),
        f"key {key!r}, expected names in order {named}",
    )
    unnamed = [o for o, n in zip(objects, names, strict=True) if not n]
    if unnamed:
        parts = [[str(o[k]) for k in ("type", "reason") if o.get(k)] for o in unnamed]
        c.check(
            f"{label}: grouping key names nameless objects by type and reason",
            all(p in key for ps in parts for p in ps),
            f"key {key!r}, expected {parts}",
        )

    tags = event["tags"]
    port = urlsplit(run["endpoint"]).port
    c.check(
        f"{label}: tag hasura.endpoint is the endpoint",
        f"{host}:{port}" in tags.get("hasura.endpoint", ""),
        short(tags),
    )
    c.check(
        f"{label}: tag hasura.inconsistent_count is {len(objects)}",
        tags.get("hasura.inconsistent_count") == str(len(objects)),
        short(tags),
    )
    types = sorted({o["type"] for o in objects if o.get("type")})
    c.check(
        f"{label}: tag hasura.object_types names every type {types}",
        "hasura.object_types" in tags and all(t in tags["hasura.object_types"] for t in types),
        short(tags),
    )

    ctx = (data.get("contexts") or {}).get("hasura")
    if c.check(
        f"{label}: context hasura is present", isinstance(ctx, dict), short(data.get("contexts"))
    ):
        c.check(
            f"{label}: context hasura holds the endpoint",
            f"{host}:{port}" in str(ctx.get("endpoint", "")),
            short(ctx),
        )
        c.check(
            f"{label}: context hasura holds attempts = 2 (--retries 1)",
            ctx.get("attempts") == 2,
            short(ctx),
        )
        held = ctx.get("inconsistent_objects", ctx.get("objects"))
        if c.check(
            f"{label}: context hasura holds the objects as a JSON list",
            isinstance(held, list),
            f"found {type(held).__name__}: {short(held)}",
        ):
            c.check(
                f"{label}: context objects are Hasura's, as received",
                held == objects,
                f"context {short(held)} vs Hasura {short(objects)}",
            )

    attached = [p for h, p in items_of(envs, "attachment") if h.get("filename") == ATTACHMENT]
    if c.check(
        f"{label}: envelope carries the attachment {ATTACHMENT}",
        len(attached) == 1,
        f"{len(attached)} found; attachments "
        f"{[h.get('filename') for h, _ in items_of(envs, 'attachment')]}",
    ):
        try:
            body = json.loads(attached[0])
        except ValueError:
            body = attached[0]
        c.check(f"{label}: attachment holds the full array", body == objects, short(body))
    check_checkins(c, run, envs, "error")
    return event


def check_failed(c, run, evs, envs, version):
    label = run["name"]
    if not c.check(f"{label}: exactly one event stored", len(evs) == 1, f"{len(evs)} events"):
        return None
    event = evs[0]
    check_common(c, run, event, version, "HasuraAccessDenied")
    key = event["grouping_key"]
    host = urlsplit(run["endpoint"]).hostname
    c.check(
        f"{label}: grouping key starts with hasura-metadata-api-error",
        key.startswith("hasura-metadata-api-error"),
        repr(key),
    )
    c.check(f"{label}: grouping key contains access_denied", "access_denied" in key, repr(key))
    c.check(f"{label}: grouping key contains the host {host}", host in key, repr(key))
    expected = ["hasura-metadata-api-error", "access_denied", host]
    c.check(
        f"{label}: fingerprint is {expected}",
        event["data"].get("fingerprint") == expected,
        short(event["data"].get("fingerprint")),
    )
    check_checkins(c, run, envs, "error")
    return event


def check_consistent(c, run, evs, envs):
    label = run["name"]
    c.check(
        f"{label}: no event stored",
        not evs,
        short([e["data"].get("exception") or e["data"].get("message") for e in evs]),
    )
    kinds = sorted({h.get("type") for _pk, _raw, _hdr, items in envs for h, _p in items})
    c.check(f"{label}: only check-ins sent", kinds in ([], ["check_in"]), f"item types {kinds}")
    check_checkins(c, run, envs, "ok")


def check_probe(c, run, evs, envs):
    keys = [e["grouping_key"] for e in evs]
    c.check(
        "probe: Bugsink stored the sentry_sdk probe event",
        keys == ["bugsink-probe"],
        f"grouping keys {keys}",
    )
    files = [h.get("filename") for h, _p in items_of(envs, "attachment")]
    c.check("probe: its raw envelope kept the attachment", files == ["probe.json"], short(files))


def check_secret(c, work, secret):
    """The admin secret must not be stored anywhere Bugsink keeps data or logs."""
    needle = secret.encode()
    db = bugsink_read.connect(os.path.join(work, "db.sqlite3"))
    in_events = [e["event_id"] for e in bugsink_read.events(db) if secret in json.dumps(e)]
    c.check("secret: absent from every stored event", not in_events, f"found in {in_events}")
    in_envs = [pk for pk, raw, _h, _i in bugsink_read.envelopes(db) if needle in raw]
    c.check("secret: absent from every raw envelope", not in_envs, f"found in envelopes {in_envs}")
    # Bugsink's databases (with WAL files), its ingest store and log, and the
    # binary's stdout and stderr. The fakes' output is left out: they were
    # given the secret on purpose.
    paths = []
    for name in sorted(os.listdir(work)):
        if name.startswith(("db.sqlite3", "snappea.sqlite3")) or name == "server.log":
            paths.append(os.path.join(work, name))
    for sub in ("ingestion", "logs"):
        for root, _dirs, files in os.walk(os.path.join(work, sub)):
            paths.extend(os.path.join(root, name) for name in files)
    hits = []
    for path in paths:
        with open(path, "rb") as f:
            if needle in f.read():
                hits.append(os.path.relpath(path, work))
    c.check(
        "secret: absent from Bugsink's files and the binary's logs", not hits, f"found in {hits}"
    )


def main(work):
    with open(os.path.join(work, "secret"), encoding="utf-8") as f:
        secret = f.read().strip()
    with open(os.path.join(work, "version"), encoding="utf-8") as f:
        version = f.read().strip()
    with open(os.path.join(work, "runs.jsonl"), encoding="utf-8") as f:
        runs = [json.loads(line) for line in f if line.strip()]

    db = bugsink_read.connect(os.path.join(work, "db.sqlite3"))
    events = bugsink_read.events(db)
    envelopes = bugsink_read.envelopes(db)
    c = Checks(secret)
    stored = {}
    for run in runs:
        evs, envs = split_run(events, envelopes, run)
        if run["kind"] == "probe":
            check_probe(c, run, evs, envs)
        elif run["kind"] == "inconsistent":
            stored[run["name"]] = check_inconsistent(c, run, evs, envs, version)
        elif run["kind"] == "failed":
            stored[run["name"]] = check_failed(c, run, evs, envs, version)
        else:
            check_consistent(c, run, evs, envs)

    issue = {name: e["issue_id"] if e else None for name, e in stored.items()}
    key = {name: e["grouping_key"] if e else None for name, e in stored.items()}
    if all(issue.get(n) for n in ("first", "second")):
        c.check(
            "grouping: a lasting inconsistency stays one issue (first, second)",
            issue["first"] == issue["second"] and key["first"] == key["second"],
            f"keys {key['first']!r} / {key['second']!r}",
        )
    if all(issue.get(n) for n in ("first", "other")):
        c.check(
            "grouping: a different set of objects opens a new issue (other)",
            issue["other"] != issue["first"],
            f"key {key['other']!r}",
        )
    if all(issue.get(n) for n in ("first", "other", "denied")):
        c.check(
            "grouping: the failed run has its own issue (denied)",
            issue["denied"] not in (issue["first"], issue["other"]),
            f"key {key['denied']!r}",
        )
    check_secret(c, work, secret)
    return 1 if c.failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
