"""PostgreSQL stops while plans are reminding (issue 8, finding 4): the worker writes one
warning for the outage and one line when it clears, not a traceback per retry; no
reminder is lost or doubled, and the mirror agrees with every plan afterwards."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.faults.harness import StoppablePostgres
from tests.rig import ANYTIME, eventually, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import PlanStatus, StepStatus

pytestmark = [pytest.mark.e2e]

OUTAGE_SECONDS = 8


async def test_postgres_outage_is_one_warning_and_loses_nothing(
    dev_env: WorkflowEnvironment,
    stoppable_pg: StoppablePostgres,
    fault_db_url: str,
    fault_pool: asyncpg.Pool,
    telegram: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await fault_pool.execute("SELECT setval('lead_registry_id_seq', 900000)")
    async with plan_rig(dev_env.client, fault_db_url, fault_pool, telegram) as rig:
        handles = []
        for n in range(4):
            lead = await rig.new_lead(owner=7000 + n)
            # A plan day of 4 s: the first nudge falls due during the outage.
            handles.append(
                await rig.start(
                    lead, owner=7000 + n, approved=True, schedule=ANYTIME, day_seconds=4
                )
            )
        for handle in handles:
            await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)

        stoppable_pg.stop()
        try:
            await eventually(lambda: _logged(caplog, "PostgreSQL unavailable"), timeout=30)
            await asyncio.sleep(OUTAGE_SECONDS)
        finally:
            stoppable_pg.start()
        await eventually(lambda: _logged(caplog, "PostgreSQL is back"), timeout=60)
        for handle in handles:  # the nudge that fell due in the outage went out
            await rig.wait_state(handle, lambda s: s.steps[0].reminder_count >= 2, timeout=60)
        for handle in handles:
            await handle.signal(EngagementPlanWorkflow.cancel)
        for handle in handles:
            state = await rig.wait_state(handle, lambda s: s.status == PlanStatus.CANCELLED)
            await eventually(functools.partial(_mirrored, rig, state), timeout=30)

    lines = [r.getMessage() for r in caplog.records if r.name == "leadpilot.outages"]
    assert len([m for m in lines if m.startswith("PostgreSQL unavailable")]) == 1, lines
    assert len([m for m in lines if m.startswith("PostgreSQL is back")]) == 1, lines
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]

    # Nothing doubled: every delivery went out once, and each message Telegram shows is one.
    ledger = await fault_pool.fetch(
        "SELECT telegram_id, message_id FROM telegram_deliveries WHERE status = 'sent'"
    )
    recorded = sorted((r["telegram_id"], r["message_id"]) for r in ledger)
    delivered = sorted((m.chat_id, m.message_id) for m in telegram.sent())
    assert delivered == recorded


async def _logged(caplog: pytest.LogCaptureFixture, prefix: str) -> bool:
    return any(r.getMessage().startswith(prefix) for r in caplog.records)


async def _mirrored(rig: Any, state: Any) -> bool:
    try:
        await rig.assert_mirror_matches(state)
    except AssertionError:
        return False
    return True
