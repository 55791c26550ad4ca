"""Sends started a lead ahead of their due time (`PlanInput.send_lead_seconds`, issue 9):
the plan wakes early, the send waits for the due time right before its HTTP call, so it
reaches Telegram at the due time and never before it, and a reason to withhold it that
comes up while it waits still withholds it. Real dev server, workers, PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from temporal_client import PlanHandle
from tests.rig import ANYTIME, OWNER, PlanRig, eventually, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import PlanState, PlanStatus, StepAction, StepStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]


async def _step2_due(rig: PlanRig, lead: float, day_seconds: int) -> tuple[PlanHandle, PlanState]:
    """A plan whose step 1 is answered: step 2 falls due two plan days later."""
    lead_id = await rig.new_lead()
    handle = await rig.start(
        lead_id, approved=True, schedule=ANYTIME, day_seconds=day_seconds, send_lead_seconds=lead
    )
    await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    state = await handle.execute_update(
        EngagementPlanWorkflow.complete_step, StepAction(step_id=1, plan_version=1)
    )
    return handle, state


async def _events(handle: PlanHandle) -> list[HistoryEvent]:
    return [e async for e in handle.fetch_history_events()]


def _send_inputs(events: list[HistoryEvent]) -> list[dict[str, Any]]:
    sends = [
        e.activity_task_scheduled_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_reminder"
    ]
    return [json.loads(a.input.payloads[0].data) for a in sends]


async def test_an_early_send_reaches_telegram_at_its_due_time_never_before(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handle, state = await _step2_due(rig, lead=2.0, day_seconds=3)
        due = state.steps[1].due_at
        assert due is not None
        state = await rig.wait_state(
            handle, lambda s: s.steps[1].status == StepStatus.SENT, timeout=30
        )
        await rig.assert_mirror_matches(state)
        events = await _events(handle)

    first, second = _send_inputs(events)
    assert first["not_before"] is None  # step 1 was due on approval: nothing to lead
    assert datetime.fromisoformat(second["not_before"]) == due
    # The timer that woke the plan for step 2 ended exactly the lead before the due time
    # (workflow time: the start of the task that set it).
    task_started = wake = None
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = e.event_time.ToDatetime(tzinfo=due.tzinfo)
        elif e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and task_started is not None:
            wake = (
                task_started + e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            )
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and (
            e.activity_task_scheduled_event_attributes.activity_type.name == "send_reminder"
        ):
            send_woken_at = wake
    assert send_woken_at is not None
    assert (due - send_woken_at).total_seconds() == pytest.approx(2.0, abs=0.002)
    # Telegram got it at its due time, not before (same machine clock as the server).
    reminders = [c for c in telegram.calls("sendMessage", ok=True) if c.chat_id == OWNER]
    assert len(reminders) == 2
    assert reminders[1].at >= due.timestamp()


async def test_a_lead_closed_while_the_send_waits_for_its_due_time_is_not_reminded(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The owner closes the deal in the seconds before the reminder is due, while its send
    already waits: nothing is sent and the plan ends."""
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handle, state = await _step2_due(rig, lead=5.0, day_seconds=5)

        async def waiting_send() -> bool | None:
            started = [
                e
                for e in await _events(handle)
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            ]
            return len(started) >= 2 or None  # step 1's send, then step 2's

        await eventually(waiting_send, timeout=30)
        await pool.execute(
            "UPDATE lead_registry SET status = 'closed_won' WHERE id = $1", state.lead_id
        )
        final = await rig.wait_state(handle, lambda s: s.status == PlanStatus.CANCELLED)
    assert final.steps[1].status == StepStatus.CANCELLED
    assert len(telegram.sent(OWNER)) == 1  # step 1 only
