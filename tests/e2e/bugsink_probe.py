"""Send one known event and one check-in to Bugsink with Python's sentry_sdk.

usage: bugsink_probe.py DSN

Run before the binary under test, this shows that the instance ingests and
that the read-back finds the event, so a failure later points at the binary
and not at the test setup. The event is grouped by its own fingerprint and
carries an attachment, like the binary's inconsistency report.
"""

import sys

import sentry_sdk
from sentry_sdk.crons import capture_checkin


def main(dsn):
    sentry_sdk.init(
        dsn=dsn,
        environment="e2e-probe",
        release="bugsink-probe@1",
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["bugsink-probe"]
        scope.set_tag("probe", "yes")
        scope.set_context("probe", {"list": [{"n": 1}]})
        scope.add_attachment(
            bytes=b'{"probe":true}', filename="probe.json", content_type="application/json"
        )
        sentry_sdk.capture_message("bugsink probe", level="error")
    capture_checkin(monitor_slug="bugsink-probe", status="ok")
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1])
