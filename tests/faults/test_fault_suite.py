"""The fault suite, short version (the full one: `benchmarks/faults.py`). Real worker
processes on the dev server; each scenario asserts what RELIABILITY.md promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.faults import scenarios
from tests.faults.harness import StoppablePostgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def promised(fig: scenarios.Figures) -> None:
    print(fig.line())
    assert fig.lost == 0
    assert fig.after_answer == 0  # an answered step is never reminded again
    assert fig.duplicated == fig.documented  # only the documented lease-expiry case
    assert fig.mirror_mismatches == 0
    assert fig.notes.get("unfinished", 0) == 0


async def test_worker_sigkill(
    dev_env: WorkflowEnvironment, stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    fig = await scenarios.worker_kills(dev_env.client, stoppable_pg, tmp_path, plans=12, kills=1)
    promised(fig)
    assert fig.reminders == 12 * 3
    assert fig.per_chat_429 == 0


async def test_postgres_outage(
    dev_env: WorkflowEnvironment, stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    fig = await scenarios.postgres_outage(
        dev_env.client, stoppable_pg, tmp_path, plans=8, seconds=8
    )
    promised(fig)
    assert fig.notes["tracebacks"] == 0
    assert fig.notes["outage_warnings"] == 1 and fig.notes["back_lines"] == 1


async def test_telegram_faults(
    dev_env: WorkflowEnvironment, stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    fig = await scenarios.telegram_faults(dev_env.client, stoppable_pg, tmp_path, plans=9, burst=6)
    promised(fig)
    assert fig.per_chat_429 == 0  # only the 429s the suite injected
    # (plans of that owner that finished before the block stay completed)
    assert "blocked" in fig.notes["blocked_owner_plans"].split(",")


async def test_planner_faults(
    dev_env: WorkflowEnvironment, stoppable_pg: StoppablePostgres, tmp_path: Path
) -> None:
    fig = await scenarios.planner_faults(dev_env.client, stoppable_pg, tmp_path, plans=3)
    print(fig.line())
    assert fig.lost == 0  # every owner heard: a plan, or why there is none
    assert fig.notes["failed_drafts"] >= 1
    assert fig.notes["raw_provider_text"] == 0
