"""Sends that wait in the telegram queue's backlog go out by priority (workflows/
engagement_plan.py, REMINDER_PRIORITY / NOTICE_PRIORITY): a step's reminder before the
completion notices queued ahead of it. Real dev server (it dispatches by priority),
workers, PostgreSQL and the Telegram emulator."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from telegram_ui.session import make_bot
from temporal_client import PlanHandle
from tests.faults.scenarios import reminder_step
from tests.rig import ANYTIME, PlanRig, eventually
from worker import engagement_worker, outage_interceptors, telegram_worker
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import (
    SEND_PRIORITY,
    NoticeKind,
    PlanStatus,
    PlanStep,
    ReminderKind,
    StepAction,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]

TOMORROW = [PlanStep(step_id=1, action_type="call", description="Call", delay_days=1)]
NOW = [PlanStep(step_id=1, action_type="email", description="Intro", delay_days=0)]


async def test_a_backlog_of_sends_delivers_the_reminders_before_older_notices(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Telegram sends stopped (no send worker) while three plans completed and then three
    reminders fell due; once sends resume, one at a time, every reminder reaches Telegram
    before any of the earlier completion notices."""
    cfg = Settings(
        database_url=db_url,
        telegram_bot_token="123456:TEST",
        telegram_api_base=telegram.base_url,
        workflow_sandbox="full",
        max_concurrent_sends=1,
    )
    client, interceptors = dev_env.client, outage_interceptors()
    bot = make_bot(cfg.telegram_bot_token.get_secret_value(), cfg.telegram_api_base)
    workers = [engagement_worker(client, pool, cfg, interceptors)]
    running = [asyncio.create_task(workers[0].run())]
    rig = PlanRig(client, pool, telegram)
    try:
        completed = []
        for i in range(3):
            lead = await rig.new_lead(owner=7100 + i)
            handle = await rig.start(
                lead, 7100 + i, steps=TOMORROW, approved=True, schedule=ANYTIME
            )
            await rig.wait_state(handle, lambda s: s.status == PlanStatus.ACTIVE)
            state = await handle.execute_update(
                EngagementPlanWorkflow.complete_step, StepAction(step_id=1, plan_version=1)
            )
            assert state.status == PlanStatus.COMPLETED
            await eventually(functools.partial(_send_pending, handle, "send_notice"))
            completed.append(7100 + i)
        due: list[PlanHandle] = []
        for i in range(3):
            lead = await rig.new_lead(owner=7200 + i)
            due.append(await rig.start(lead, 7200 + i, steps=NOW, approved=True, schedule=ANYTIME))
        for handle in due:  # each reminder's send is scheduled, behind the notices
            await eventually(functools.partial(_send_pending, handle, "send_reminder"))
        assert telegram.calls("sendMessage") == []

        workers.append(telegram_worker(client, pool, bot, cfg, interceptors))
        running.append(asyncio.create_task(workers[-1].run()))

        def received() -> list[Any]:
            return telegram.calls("sendMessage", ok=True)

        await eventually(lambda: _at_least(received, 6), timeout=30)
        order = [
            "reminder" if reminder_step(c.params.get("reply_markup")) else "notice"
            for c in received()
        ]
        assert order == ["reminder"] * 3 + ["notice"] * 3, order
        assert {int(c.params["chat_id"]) for c in received()[3:]} == set(completed)
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*running, return_exceptions=True)
        await bot.session.close()


async def _send_pending(handle: PlanHandle, activity_type: str) -> bool:
    pending = (await handle.describe()).raw_description.pending_activities
    return any(a.activity_type.name == activity_type for a in pending)


async def _at_least(calls: Any, n: int) -> bool:
    return len(calls()) >= n


def test_every_kind_of_send_has_its_priority() -> None:
    """A new kind of reminder or notice must be placed deliberately, not left to inherit."""
    kinds = [*ReminderKind, *NoticeKind]
    assert sorted(SEND_PRIORITY, key=str) == sorted(kinds, key=str)
    assert SEND_PRIORITY[ReminderKind.FIRST] < min(
        v for k, v in SEND_PRIORITY.items() if k != ReminderKind.FIRST
    )
    assert all(1 <= v <= 5 for v in SEND_PRIORITY.values())
