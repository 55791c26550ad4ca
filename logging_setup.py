"""One logging set-up for every process (worker, bot, Mini App, `leadpilot dev`).

`LOG_FORMAT=text` (default) writes one readable line per record; `LOG_FORMAT=json`
writes one JSON object per line for a log collector, with the Temporal context that
temporalio's `workflow.logger` and `activity.logger` attach to each record (the
`temporal_workflow` / `temporal_activity` extras) lifted into top-level fields, so a
line can be found by workflow id, run id, workflow type or activity type.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The keys of temporalio's extras, renamed where workflow and activity disagree
# (`run_id` vs `workflow_run_id`), so both kinds of record share one schema.
_TEMPORAL_FIELDS: dict[str, str] = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "activity_id": "activity_id",
    "attempt": "attempt",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "update_id": "update_id",
    "update_name": "update_name",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    Temporal context when the record carries one, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for extra in ("temporal_workflow", "temporal_activity"):
            details = getattr(record, extra, None)
            if isinstance(details, Mapping):
                for key, value in details.items():
                    if key in _TEMPORAL_FIELDS:
                        entry[_TEMPORAL_FIELDS[key]] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(
    fmt: LogFormat = "text", level: str | int = "INFO", stream: IO[str] | None = None
) -> None:
    """Replace the root logger's handlers with one handler on stderr (or `stream`).

    Idempotent: calling it again (tests, `leadpilot dev` running several parts in one
    process) swaps the handler instead of printing every line twice.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
