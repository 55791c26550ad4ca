"""Our own metrics, exported through the Temporal runtime's Prometheus endpoint.

Recording through the SDK's metric meter puts them on the same /metrics page as the
SDK's runtime metrics (task latencies, poller counts, …) with no second exporter.
"""

from __future__ import annotations

from temporalio import activity

LATENESS_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600]


def reminder_sent(kind: str, lateness_seconds: float | None) -> None:
    meter = activity.metric_meter()
    meter.create_counter("leadpilot_reminders_sent", "Reminders delivered to owners").add(
        1, {"kind": kind}
    )
    if lateness_seconds is not None:
        meter.create_histogram_float(
            "leadpilot_reminder_lateness",
            "Seconds between a step's due time and its first reminder",
            "s",
        ).record(max(0.0, lateness_seconds))


def send_error(kind: str) -> None:
    activity.metric_meter().create_counter(
        "leadpilot_send_errors", "Failed Telegram sends by kind"
    ).add(1, {"kind": kind})


def reminder_withheld(reason: str) -> None:
    """A due reminder not sent because its step was answered or its lead closed meanwhile."""
    activity.metric_meter().create_counter(
        "leadpilot_reminders_withheld", "Reminders not sent: no longer wanted"
    ).add(1, {"reason": reason})


def send_waited(kind: str) -> None:
    """An attempt that stepped back: another attempt held the lease, or the chat is paced."""
    activity.metric_meter().create_counter(
        "leadpilot_send_waits", "Send attempts retried later by design"
    ).add(1, {"kind": kind})
