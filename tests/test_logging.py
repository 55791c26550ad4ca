"""LOG_FORMAT=json: one JSON object per line, carrying Temporal's workflow/activity context.

An operator searching the logs for a plan's workflow id must find the lines its
activities and its workflow wrote; the set-up is the one every process uses
(logging_setup.setup_logging), the worker a real one on the time-skipping server.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from logging_setup import setup_logging
    from workflows.sandbox import workflow_runner


@activity.defn(name="log_something")
async def log_something(lead_id: int) -> None:
    activity.logger.info("drafting for lead %s", lead_id)
    try:
        raise ValueError("planner answered garbage")
    except ValueError:
        activity.logger.exception("draft failed")


@workflow.defn(name="LoggingProbe")
class LoggingProbe:
    @workflow.run
    async def run(self, lead_id: int) -> None:
        workflow.logger.info("plan for lead %s waiting", lead_id)
        await workflow.execute_activity(
            log_something, lead_id, start_to_close_timeout=timedelta(seconds=30)
        )


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process-wide set-up writing to a buffer; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging("json", "INFO", stream=stream)
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_json_lines_carry_workflow_and_activity_context(
    ts_env: Any, captured: io.StringIO
) -> None:
    queue = f"logging-{uuid.uuid4().hex[:8]}"
    workflow_id = f"lead-{uuid.uuid4().hex[:8]}"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[LoggingProbe],
        activities=[log_something],
        workflow_runner=workflow_runner(),
    ):
        handle = await ts_env.client.start_workflow(
            LoggingProbe.run, 42, id=workflow_id, task_queue=queue
        )
        await handle.result()

    lines = records(captured)  # every line is JSON, or json.loads failed above
    by_message = {r["message"].split(" (")[0].split("\n")[0]: r for r in lines}

    drafting = by_message["drafting for lead 42"]
    assert drafting["level"] == "INFO"
    assert drafting["logger"] == "temporalio.activity"
    assert drafting["workflow_id"] == workflow_id
    assert drafting["run_id"] == handle.result_run_id
    assert drafting["workflow_type"] == "LoggingProbe"
    assert drafting["activity_type"] == "log_something"
    assert drafting["task_queue"] == queue
    assert drafting["attempt"] == 1
    assert drafting["time"].endswith("+00:00")

    failed = by_message["draft failed"]
    assert failed["level"] == "ERROR"
    assert "ValueError: planner answered garbage" in failed["exception"]
    assert failed["activity_type"] == "log_something"

    waiting = by_message["plan for lead 42 waiting"]
    assert waiting["logger"] == "temporalio.workflow"
    assert waiting["workflow_id"] == workflow_id
    assert waiting["run_id"] == handle.result_run_id
    assert waiting["workflow_type"] == "LoggingProbe"
    assert "activity_type" not in waiting


def test_text_format_is_one_readable_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("text", "WARNING", stream=stream)
        setup_logging("text", "WARNING", stream=stream)  # again: still one handler
        logging.getLogger("leadpilot.worker").warning("worker running on %s", "engagement")
        logging.getLogger("leadpilot.worker").info("below the level")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    out = stream.getvalue().splitlines()
    assert len(out) == 1
    assert out[0].endswith("WARNING leadpilot.worker: worker running on engagement")
