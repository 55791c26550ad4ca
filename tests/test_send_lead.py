"""Sends started a lead ahead of their due time (`PlanInput.send_lead_seconds`, issue 9):
the plan wakes early, the send waits for the due time right before its HTTP call, so it
reaches Telegram at the due time and never before it, and a reason to withhold it that
comes up while it waits still withholds it. Real dev server, workers, PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from temporal_client import PlanHandle
from tests.rig import ANYTIME, OWNER, PlanRig, eventually, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import PauseRequest, PlanState, PlanStatus, StepAction, StepStatus

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


async def _step2_send_waits(handle: PlanHandle) -> bool | None:
    """Whether the send of step 2 was started (a lead ahead of its due time)."""
    return any(s["step_id"] == 2 for s in _send_inputs(await _events(handle))) or None


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

        await eventually(lambda: _step2_send_waits(handle), timeout=30)
        await pool.execute(
            "UPDATE lead_registry SET status = 'closed_won' WHERE id = $1", state.lead_id
        )
        final = await rig.wait_state(handle, lambda s: s.status == PlanStatus.CANCELLED)
    assert final.steps[1].status == StepStatus.CANCELLED
    assert len(telegram.sent(OWNER)) == 1  # step 1 only


async def test_a_plan_paused_while_the_send_waits_is_not_reminded_until_resumed(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The owner taps Pause in the seconds before a reminder is due, while its send already
    waits for the due time: nothing reaches Telegram while paused, and Resume sends it."""
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handle, state = await _step2_due(rig, lead=5.0, day_seconds=5)

        await eventually(lambda: _step2_send_waits(handle), timeout=30)
        due = state.steps[1].due_at
        assert due is not None
        paused = await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
        assert paused.status == PlanStatus.PAUSED and datetime.now(UTC) < due
        # The send woke at the due time, found the plan changed, and sent nothing.
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2)
        settled = await handle.query(EngagementPlanWorkflow.state)
        assert settled.status == PlanStatus.PAUSED
        assert (settled.steps[1].status, settled.steps[1].reminder_count) == (StepStatus.PENDING, 0)
        assert len(telegram.sent(OWNER)) == 1  # step 1 only
        await rig.assert_mirror_matches(settled)

        await handle.execute_update(EngagementPlanWorkflow.resume)
        final = await rig.wait_state(
            handle, lambda s: s.steps[1].status == StepStatus.SENT, timeout=30
        )
        await rig.assert_mirror_matches(final)
    assert len(telegram.sent(OWNER)) == 2
    assert final.steps[1].reminder_count == 1


async def test_rows_ahead_of_the_plan_are_written_past_and_the_reminder_still_goes_out(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The rows hold a newer revision than the plan knows (an operator reset the workflow
    to an earlier event): the send is withheld once, the plan writes its rows past that
    revision, and the reminder goes out; it is not refused forever."""
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handle, state = await _step2_due(rig, lead=0.0, day_seconds=5)
        await pool.execute(
            "UPDATE scheduled_reminders SET revision = revision + 100 WHERE lead_id = $1",
            state.lead_id,
        )
        final = await rig.wait_state(
            handle, lambda s: s.steps[1].status == StepStatus.SENT, timeout=30
        )
        await rig.assert_mirror_matches(final)
    assert final.revision > state.revision + 100
    assert len(telegram.sent(OWNER)) == 2  # step 1, then step 2 once
