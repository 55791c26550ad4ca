"""The engagement-plan workflow on the time-skipping test server, with real workers,
PostgreSQL and the Telegram emulator: what the owner receives, what the rows say."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from storage.activity_log import ActivityLogRepository
from storage.leads import LeadRepository
from storage.reminders import ReminderRepository
from temporal_converter import DATA_CONVERTER
from tests.rig import ANYTIME, OWNER, STEPS, describe_raw, local, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.errors import Rejection, rejection_of
from workflows.models import (
    ApproveRequest,
    CancelRequest,
    PauseRequest,
    PlanState,
    PlanStatus,
    PlanStep,
    ReplacePlanRequest,
    Schedule,
    SnoozeAction,
    StepAction,
    StepStatus,
)
from workflows.sandbox import workflow_runner
from workflows.timing import fit_to_window

BERLIN = Schedule(timezone="Europe/Berlin")
# How far a workflow-clock reading may sit from what the plan says. The test server's clock
# is locked while a test polls, so only real seconds of worker latency pass: minutes tell
# "at its due time" from "a nudge or a day late" without measuring speed.
SLACK = timedelta(minutes=5)


async def search_attribute(handle: WorkflowHandle[Any, Any], name: str) -> Any:
    """One search attribute as the server stores it (from the raw description)."""
    raw = await describe_raw(handle)
    payload = raw.workflow_execution_info.search_attributes.indexed_fields.get(name)
    return None if payload is None or not payload.data else json.loads(payload.data)


def step_is(step_id: int, status: StepStatus) -> Callable[[PlanState], bool]:
    return lambda s: (step := s.step(step_id)) is not None and step.status == status


def step_reminded(step_id: int, count: int) -> Callable[[PlanState], bool]:
    return lambda s: (step := s.step(step_id)) is not None and step.reminder_count == count


def plan_replayer() -> Replayer:
    return Replayer(
        workflows=[EngagementPlanWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(),
    )


async def advance_to(env: WorkflowEnvironment, when: datetime | None, slack: float = 1.0) -> None:
    assert when is not None
    now = await env.get_current_time()
    if when > now:
        await env.sleep((when - now).total_seconds() + slack)


async def advance(env: WorkflowEnvironment, delta: timedelta) -> None:
    await env.sleep(delta.total_seconds())


async def answer(
    handle: WorkflowHandle[Any, Any], update: Any, state: PlanState, **extra: Any
) -> PlanState:
    cur = state.current
    assert cur is not None
    action = (SnoozeAction if "days" in extra else StepAction)(
        step_id=cur.step_id, plan_version=state.plan_version, **extra
    )
    return await handle.execute_update(update, action)


def reminders_to(telegram: Any, chat_id: int) -> list[str]:
    return [m.text for m in telegram.sent(chat_id) if m.text and "Step " in m.text]


async def update_mirror_writes(handle: WorkflowHandle[Any, Any], update: str) -> list[int]:
    """For each `update` the plan took, how many mirror writes its workflow task made."""
    counts: list[int] = []
    accepted: dict[str, int] = {}
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            attrs = event.workflow_execution_update_accepted_event_attributes
            if attrs.accepted_request.input.name == update:
                accepted[attrs.protocol_instance_id] = len(counts)
                counts.append(0)
        elif event.HasField("workflow_execution_update_completed_event_attributes"):
            accepted.pop(
                event.workflow_execution_update_completed_event_attributes.meta.update_id, None
            )
        elif (
            event.HasField("marker_recorded_event_attributes")
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            for index in accepted.values():
                counts[index] += 1
    return counts


async def log_types(pool: asyncpg.Pool, lead_id: int) -> list[str]:
    return [
        e.activity_type for e in reversed(await ActivityLogRepository(pool).for_lead(lead_id, 500))
    ]


def first_send(history: WorkflowHistory) -> tuple[HistoryEvent, HistoryEvent]:
    """The first send_reminder's scheduled and started events. The started event is written
    when the activity finished: it carries the attempt that succeeded."""
    scheduled = next(
        e
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_reminder"
    )
    started = next(
        e
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id == scheduled.event_id
    )
    return scheduled, started


def sent_after(state: PlanState, step_id: int, due: datetime | None) -> timedelta:
    step = state.step(step_id)
    assert step is not None and step.last_reminded_at is not None and due is not None
    return step.last_reminded_at - due


async def test_three_week_plan_end_to_end(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Approval, each step reminded on time in Berlin's window and workdays, done / skip /
    snooze, gaps counted from each answer, mirror rows equal to the workflow's state."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, schedule=BERLIN)
        state = await rig.wait_state(
            handle, lambda s: s.status == PlanStatus.AWAITING_APPROVAL and s.revision > 0
        )
        await rig.assert_mirror_matches(state)
        ready = await telegram.wait_for(
            lambda c: c.method == "sendMessage" and "Start plan" in json.dumps(c.params)
        )
        assert "Engagement plan" in ready.params["text"]
        # Nothing is scheduled before approval, however long the owner takes.
        await advance(ts_env, timedelta(days=3))
        assert reminders_to(telegram, OWNER) == []

        state = await handle.execute_update(EngagementPlanWorkflow.approve)
        assert state.status == PlanStatus.ACTIVE
        assert await search_attribute(handle, "PlanStatus") == "active"
        assert await search_attribute(handle, "LeadId") == lead
        assert await search_attribute(handle, "TelegramId") == OWNER
        next_due = state.current.due_at if state.current else None
        assert next_due is not None
        assert datetime.fromisoformat(await search_attribute(handle, "NextDueAt")) == next_due
        await rig.assert_mirror_matches(state)

        actions = ["done", "skip", "snooze", "done", "done", "done"]
        for position, (step, action) in enumerate(zip(STEPS, actions, strict=True), 1):
            state = await handle.query(EngagementPlanWorkflow.state)
            cur = state.current
            assert cur is not None and cur.step_id == step.step_id
            due = cur.due_at
            when = local(due, "Europe/Berlin")
            assert time(9) <= when.time() < time(20) and when.weekday() < 5, when
            if position > 1:  # gap counted from the previous answer, then fitted
                prev, prev_step = state.steps[position - 2], STEPS[position - 2]
                answered_at = prev.completed_at
                assert answered_at is not None
                gap = timedelta(days=step.delay_days - prev_step.delay_days)
                assert due == fit_to_window(answered_at + gap, BERLIN)
            await advance_to(ts_env, due)
            state = await rig.wait_state(handle, step_is(step.step_id, StepStatus.SENT))
            assert timedelta(0) <= sent_after(state, step.step_id, due) < SLACK
            assert f"Step {position} of 6" in reminders_to(telegram, OWNER)[-1]
            await rig.assert_mirror_matches(state)
            # Answer a few hours later, inside the nudge interval.
            await advance(ts_env, timedelta(hours=3))
            if action == "snooze":
                state = await answer(handle, EngagementPlanWorkflow.snooze_step, state, days=1)
                snoozed = state.step(step.step_id)
                assert snoozed is not None and snoozed.status == StepStatus.PENDING
                assert snoozed.snooze_count == 1 and snoozed.reminder_count == 0
                await rig.assert_mirror_matches(state)
                await advance_to(ts_env, snoozed.due_at)
                state = await rig.wait_state(handle, step_is(step.step_id, StepStatus.SENT))
                assert timedelta(0) <= sent_after(state, step.step_id, snoozed.due_at) < SLACK
                action = "done"
            update = (
                EngagementPlanWorkflow.complete_step
                if action == "done"
                else EngagementPlanWorkflow.skip_step
            )
            state = await answer(handle, update, state)
            await rig.assert_mirror_matches(state)

        summary = await handle.result()
        assert (summary.status, summary.completed, summary.skipped) == (PlanStatus.COMPLETED, 5, 1)
        final = await handle.query(EngagementPlanWorkflow.state)
        await rig.assert_mirror_matches(final)
        assert len(reminders_to(telegram, OWNER)) == 7  # six steps + one after the snooze
        assert any("All steps" in (m.text or "") for m in telegram.sent(OWNER))
        types = await log_types(pool, lead)
        assert types.count("step_reminded") == 7
        for t in (
            "plan_created",
            "plan_approved",
            "step_completed",
            "step_skipped",
            "step_snoozed",
            "plan_completed",
        ):
            assert t in types, t

        history = await handle.fetch_history()
        await plan_replayer().replay_workflow(history)


async def test_the_done_that_completes_a_plan_does_not_wait_for_the_notice(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The last Done is answered once the rows say "completed"; the "All steps done"
    message follows from the run. Before, the tap waited for that message, which queues
    behind the telegram queue's rate limit and the chat's spacing."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, steps=STEPS[:1])
        state = await rig.wait_state(handle, step_is(STEPS[0].step_id, StepStatus.SENT))
        telegram.delay_next("sendMessage", 5.0, chat_id=OWNER)  # the notice, held
        state = await answer(handle, EngagementPlanWorkflow.complete_step, state)
        assert state.status == PlanStatus.COMPLETED
        assert not any("All steps" in (m.text or "") for m in telegram.sent(OWNER))
        await rig.assert_mirror_matches(state)
        assert "plan_completed" in await log_types(pool, lead)

        summary = await handle.result()
        assert (summary.status, summary.completed) == (PlanStatus.COMPLETED, 1)
        notices = [m for m in telegram.sent(OWNER) if "All steps" in (m.text or "")]
        assert len(notices) == 1
        await plan_replayer().replay_workflow(await handle.fetch_history())


async def test_nudges_then_auto_snooze_then_new_round(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        first = state.steps[0].last_reminded_at
        assert first is not None
        # No re-ping within the first 24 hours: never spammed.
        await advance(ts_env, timedelta(hours=23))
        assert len(reminders_to(telegram, OWNER)) == 1

        await advance(ts_env, timedelta(hours=1, seconds=2))
        state = await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 2)
        assert timedelta(0) <= sent_after(state, 1, first + timedelta(hours=24)) < SLACK
        assert "reminder 2" in reminders_to(telegram, OWNER)[-1]
        await rig.assert_mirror_matches(state)

        await advance_to(ts_env, first + timedelta(hours=72))
        state = await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 3)
        assert timedelta(0) <= sent_after(state, 1, first + timedelta(hours=72)) < SLACK
        assert len(reminders_to(telegram, OWNER)) == 3

        # 24 h after the third unanswered reminder: auto-snooze 7 days, owner told, count reset.
        await advance_to(ts_env, first + timedelta(hours=96))
        state = await rig.wait_state(handle, lambda s: s.steps[0].snooze_count == 1)
        step = state.steps[0]
        assert (step.status, step.reminder_count) == (StepStatus.PENDING, 0)
        assert step.due_at is not None
        assert abs(step.due_at - (first + timedelta(hours=96, days=7))) < SLACK
        notice = await telegram.wait_for(
            lambda c: c.method == "sendMessage" and "No answer to 3" in c.params.get("text", "")
        )
        assert "7 days" in notice.params["text"]
        await rig.assert_mirror_matches(state)
        assert "step_auto_snoozed" in await log_types(pool, lead)

        # Silence during the snooze, then a fresh round.
        await advance(ts_env, timedelta(days=6))
        assert len(reminders_to(telegram, OWNER)) == 3
        await advance_to(ts_env, step.due_at)
        state = await rig.wait_state(
            handle,
            lambda s: s.steps[0].reminder_count == 1 and s.steps[0].status == StepStatus.SENT,
        )
        assert len(reminders_to(telegram, OWNER)) == 4
        await rig.assert_mirror_matches(state)


async def test_pause_keeps_remaining_delay_and_vacation_resumes_itself(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        state = await answer(handle, EngagementPlanWorkflow.complete_step, state)
        due = state.steps[1].due_at  # two days out
        assert due is not None

        await advance(ts_env, timedelta(days=1))
        state = await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
        assert state.status == PlanStatus.PAUSED
        assert await search_attribute(handle, "PlanStatus") == "paused"

        await advance(ts_env, timedelta(days=5))
        state = await handle.query(EngagementPlanWorkflow.state)
        assert state.steps[1].status == StepStatus.PENDING
        assert len(reminders_to(telegram, OWNER)) == 1

        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                EngagementPlanWorkflow.pause, PauseRequest(until=datetime(2000, 1, 1, tzinfo=UTC))
            )
        assert rejection_of(err.value) == Rejection.INVALID  # a pause end in the past

        resumed_at = await ts_env.get_current_time()
        state = await handle.execute_update(EngagementPlanWorkflow.resume)
        new_due = state.steps[1].due_at
        assert new_due is not None
        assert abs((new_due - resumed_at) - timedelta(days=1)) < SLACK
        await rig.assert_mirror_matches(state)

        # A vacation: pause until a date; the plan resumes by itself, the clock shifted.
        await advance(ts_env, timedelta(hours=12))
        back = await ts_env.get_current_time() + timedelta(days=3)
        state = await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest(until=back))
        await advance_to(ts_env, back)
        state = await rig.wait_state(handle, lambda s: s.status == PlanStatus.ACTIVE)
        shifted = state.steps[1].due_at
        assert shifted is not None
        assert abs(shifted - (back + timedelta(hours=12))) < SLACK
        await advance_to(ts_env, shifted)
        await rig.wait_state(handle, lambda s: s.steps[1].status == StepStatus.SENT)
        types = await log_types(pool, lead)
        assert types.count("plan_paused") == 2 and types.count("plan_resumed") == 2


async def test_replace_plan_closes_old_rows_and_stales_old_buttons(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        old = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        new_steps = [
            PlanStep(step_id=i, action_type="call", description=f"Call {i}", delay_days=i)
            for i in range(1, 6)
        ]
        state = await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=new_steps)
        )
        assert state.plan_version == 2 and [s.step_id for s in state.steps] == [1, 2, 3, 4, 5]
        assert state.status == PlanStatus.ACTIVE and state.current_step_id == 1
        await rig.assert_mirror_matches(state)
        # The rows were written once for the replacement, both log lines with that write.
        assert await update_mirror_writes(handle, "replace_plan") == [1]
        types = await log_types(pool, lead)
        assert types.count("plan_replaced") == 1 and types.count("plan_created") == 2
        async with pool.acquire() as conn:
            old_rows = await conn.fetch(
                "SELECT status FROM scheduled_reminders WHERE lead_id=$1 AND plan_version=1", lead
            )
        assert {r["status"] for r in old_rows} == {"cancelled"}
        # A button from the old plan's reminder is stale.
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await answer(handle, EngagementPlanWorkflow.complete_step, old)
        assert rejection_of(err.value) == Rejection.ALREADY_HANDLED
        assert "replaced" in str(err.value.cause)
        # Invalid steps are rejected by the validator and change nothing.
        bad = [
            PlanStep(step_id=1, action_type="x", description="a", delay_days=5),
            PlanStep(step_id=2, action_type="x", description="b", delay_days=1),
        ]
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=bad)
            )
        assert rejection_of(err.value) == Rejection.INVALID
        assert (await handle.query(EngagementPlanWorkflow.state)).plan_version == 2


async def test_stale_and_repeated_actions_are_rejected(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, schedule=ANYTIME)
        state = await rig.wait_state(
            handle, lambda s: s.status == PlanStatus.AWAITING_APPROVAL and s.revision > 0
        )
        # A step answer before approval: refused because the plan hasn't started.
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await answer(
                handle,
                EngagementPlanWorkflow.complete_step,
                state.model_copy(update={"current_step_id": 1}),
            )
        assert rejection_of(err.value) == Rejection.NOT_STARTED
        await handle.execute_update(EngagementPlanWorkflow.approve)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(EngagementPlanWorkflow.approve)
        assert rejection_of(err.value) == Rejection.ALREADY_HANDLED
        assert "already handled" in str(err.value.cause)

        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        done = await answer(handle, EngagementPlanWorkflow.complete_step, state)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await answer(handle, EngagementPlanWorkflow.complete_step, state)  # double tap
        assert rejection_of(err.value) == Rejection.ALREADY_HANDLED
        assert "already handled: step 1 is completed" in str(err.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                EngagementPlanWorkflow.skip_step, StepAction(step_id=3, plan_version=1)
            )
        assert rejection_of(err.value) == Rejection.NOT_DUE
        assert "not due yet" in str(err.value.cause)
        after = await handle.query(EngagementPlanWorkflow.state)
        assert after.model_dump(exclude={"next_due_at"}) == done.model_dump(exclude={"next_due_at"})
        assert (await log_types(pool, lead)).count("step_completed") == 1
        await rig.assert_mirror_matches(after)


async def test_cancel_while_sleeping_is_idempotent(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        await answer(handle, EngagementPlanWorkflow.complete_step, state)
        await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="lead closed_won"))
        await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="again"))
        summary = await handle.result()
        assert (summary.status, summary.completed, summary.cancelled) == (
            PlanStatus.CANCELLED,
            1,
            5,
        )
        assert summary.reason == "lead closed_won"
        rows = await ReminderRepository(pool).get_for_lead(lead)
        assert [r.status.value for r in rows] == ["completed"] + ["cancelled"] * 5
        assert (await log_types(pool, lead)).count("plan_cancelled") == 1
        assert await search_attribute(handle, "PlanStatus") == "cancelled"


async def test_cancel_while_escalating(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        await advance(ts_env, timedelta(hours=25))
        await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 2)
        await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="stop"))
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        rows = await ReminderRepository(pool).get_for_lead(lead)
        assert {r.status.value for r in rows} == {"cancelled"}
        assert rows[0].reminder_count == 2
        assert len(reminders_to(telegram, OWNER)) == 2


async def test_bot_blocked_blocks_the_plan_until_resumed(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        telegram.block(OWNER)
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.status == PlanStatus.BLOCKED)
        assert state.blocked_reason and "blocked" in state.blocked_reason
        assert state.steps[0].status == StepStatus.PENDING
        assert await search_attribute(handle, "PlanStatus") == "blocked"
        await rig.assert_mirror_matches(state)
        assert "plan_blocked" in await log_types(pool, lead)
        assert reminders_to(telegram, OWNER) == []

        telegram.unblock(OWNER)
        await handle.execute_update(EngagementPlanWorkflow.resume)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        assert state.status == PlanStatus.ACTIVE
        assert len(reminders_to(telegram, OWNER)) == 1


async def test_rate_limit_retries_after_exactly_retry_after(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        # The fault fired: Telegram answered the first send with 429, the second went out.
        assert [c.status for c in telegram.calls("sendMessage")] == [429, 200]
        scheduled, started = first_send(await handle.fetch_history())
        assert started.activity_task_started_event_attributes.attempt == 2
        # Retry policy backoff alone would retry after 2 s; 7 s proves retry_after was used.
        waited = started.event_time.ToDatetime() - scheduled.event_time.ToDatetime()
        assert waited >= timedelta(seconds=7), waited
        assert sent_after(state, 1, state.approved_at) >= timedelta(seconds=7)
        assert len(reminders_to(telegram, OWNER)) == 1
        await rig.assert_mirror_matches(state)


async def test_server_errors_are_retried_and_delivered_once(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        telegram.fail_next("sendMessage", 502, "Bad Gateway", count=2)
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        # Both faults fired and the third attempt delivered: seen by Telegram and by Temporal.
        assert [c.status for c in telegram.calls("sendMessage")] == [502, 502, 200]
        _, started = first_send(await handle.fetch_history())
        assert started.activity_task_started_event_attributes.attempt == 3
        assert len(reminders_to(telegram, OWNER)) == 1
        assert state.status == PlanStatus.ACTIVE


async def test_continue_as_new_keeps_the_plan(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, history_event_limit=100)
        first_run = handle.result_run_id
        for step in STEPS:
            state = await rig.wait_state(
                handle, lambda s: s.current is not None and s.current.status == StepStatus.PENDING
            )
            await advance_to(ts_env, state.current.due_at if state.current else None)
            state = await rig.wait_state(handle, step_is(step.step_id, StepStatus.SENT))
            await advance(ts_env, timedelta(hours=25))  # one nudge per step, for history
            state = await rig.wait_state(handle, step_reminded(step.step_id, 2))
            await answer(handle, EngagementPlanWorkflow.complete_step, state)
        summary = await handle.result()
        assert summary.completed == 6
        history = await ts_env.client.get_workflow_handle(
            handle.id, run_id=first_run
        ).fetch_history()
        assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        assert len(reminders_to(telegram, OWNER)) == 12


async def test_set_schedule_moves_pending_due_time(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        state = await answer(handle, EngagementPlanWorkflow.complete_step, state)
        target = state.steps[1].due_at
        tokyo = Schedule(
            timezone="Asia/Tokyo", window_start=time(9), window_end=time(10), workdays_only=False
        )
        state = await handle.execute_update(EngagementPlanWorkflow.set_schedule, tokyo)
        moved = state.steps[1].due_at
        assert target is not None and moved is not None
        assert moved == fit_to_window(target, tokyo)
        assert local(moved, "Asia/Tokyo").hour == 9
        await rig.assert_mirror_matches(state)


async def test_enrolling_twice_never_starts_a_second_plan(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        first = await rig.start(lead, approved=True, schedule=ANYTIME)
        second = await rig.start(lead, approved=True, schedule=ANYTIME)
        assert first.result_run_id == second.result_run_id
        await rig.wait_state(first, step_is(1, StepStatus.SENT))
        assert len(reminders_to(telegram, OWNER)) == 1

        # Once that plan is over, the lead can be enrolled again: a new plan version,
        # so its rows, deliveries and log lines never collide with the first plan's.
        await first.signal(EngagementPlanWorkflow.cancel)
        await first.result()
        row = await LeadRepository(pool).get(lead)
        assert row is not None and row.next_plan_version == 2
        again = await rig.start(
            lead, approved=True, schedule=ANYTIME, plan_version=row.next_plan_version
        )
        assert again.result_run_id != first.result_run_id
        state = await rig.wait_state(again, step_is(1, StepStatus.SENT))
        assert state.plan_version == 2
        assert len(reminders_to(telegram, OWNER)) == 2
        await rig.assert_mirror_matches(state)
        assert (await log_types(pool, lead)).count("plan_created") == 2


async def test_drafted_plan_waits_for_approval(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """No steps given: the built-in planner drafts one, the owner sees it with its buttons."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, steps=None, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: len(s.steps) >= 5 and s.revision > 0)
        assert state.status == PlanStatus.AWAITING_APPROVAL
        msg = await telegram.wait_for_message(OWNER, "Engagement plan")
        assert [b.text for b in msg.buttons] == ["▶️ Start plan", "🔄 Regenerate", "🗑 Discard"]
        await rig.assert_mirror_matches(state)
        await advance(ts_env, timedelta(days=2))
        assert reminders_to(telegram, OWNER) == []
        drafted = telegram.call_count
        state = await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest()
        )
        assert state.drafting  # accepted at once; the draft arrives as a message
        state = await rig.wait_state(handle, lambda s: s.plan_version == 2 and not s.drafting)
        assert state.status == PlanStatus.AWAITING_APPROVAL
        await telegram.wait_for_message(OWNER, "Engagement plan", since=drafted, timeout=15)
        await handle.execute_update(EngagementPlanWorkflow.approve, ApproveRequest(plan_version=2))
        await rig.wait_state(handle, step_is(1, StepStatus.SENT))


async def test_llm_plan_and_a_refusal(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """With an OpenAI-compatible endpoint the real SDK drafts the plan; a refusal reaches the
    owner as a clear message and the lead waits for Regenerate or Discard."""
    from emulators.openai_server import OpenAIEmulator

    async with (
        OpenAIEmulator(api_key="sk-test") as llm,
        plan_rig(
            ts_env.client,
            db_url,
            pool,
            telegram,
            openai_api_key="sk-test",
            openai_base_url=llm.base_url,
        ) as rig,
    ):
        lead = await rig.new_lead()
        handle = await rig.start(lead, steps=None, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: len(s.steps) >= 5 and s.revision > 0)
        assert "(emulated model)" in state.steps[0].description
        assert len(llm.requests) == 1

        llm.refuse("I can't help with that.")
        other = await rig.new_lead(name="Grace Hopper")
        refused = await rig.start(other, steps=None, schedule=ANYTIME)
        state = await rig.wait_state(refused, lambda s: s.last_error is not None)
        assert state.steps == [] and state.status == PlanStatus.AWAITING_APPROVAL
        await telegram.wait_for_message(OWNER, "Could not draft a plan")
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await refused.execute_update(EngagementPlanWorkflow.approve)
        assert rejection_of(err.value) is not None  # which one: the test below
        assert (await refused.query(EngagementPlanWorkflow.state)).status == (
            PlanStatus.AWAITING_APPROVAL
        )
        await refused.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
        state = await rig.wait_state(refused, lambda s: len(s.steps) >= 5)
        assert state.last_error is None and state.status == PlanStatus.AWAITING_APPROVAL


async def test_approving_a_failed_draft_is_refused_as_draft_failed(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Nothing is being drafted after a refusal: the owner must hear that the draft failed
    (try Regenerate), not "a new plan is being drafted"."""
    from emulators.openai_server import OpenAIEmulator

    async with (
        OpenAIEmulator(api_key="sk-test") as llm,
        plan_rig(
            ts_env.client,
            db_url,
            pool,
            telegram,
            openai_api_key="sk-test",
            openai_base_url=llm.base_url,
        ) as rig,
    ):
        llm.refuse("I can't help with that.")
        handle = await rig.start(await rig.new_lead(), steps=None, schedule=ANYTIME)
        state = await rig.wait_state(handle, lambda s: s.last_error is not None)
        assert not state.drafting and state.steps == []
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(EngagementPlanWorkflow.approve)
        assert rejection_of(err.value) == Rejection.DRAFT_FAILED, rejection_of(err.value)


async def test_a_reminder_costs_two_workflow_tasks_and_one_activity(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Hot path: timer fired → task → send activity → task → next timer. Nothing else."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, step_reminded(1, 1))
        await advance(ts_env, timedelta(hours=24, seconds=2))
        await rig.wait_state(handle, step_reminded(1, 2))
        await rig.wait_state(
            handle, lambda s: s.next_due_at is not None and s.steps[0].reminder_count == 2
        )
        events = (await handle.fetch_history()).events
        fired = max(i for i, e in enumerate(events) if e.HasField("timer_fired_event_attributes"))
        after = events[fired:]
        next_timer = next(
            i for i, e in enumerate(after) if e.HasField("timer_started_event_attributes")
        )
        window = after[: next_timer + 1]
        tasks = sum(e.HasField("workflow_task_completed_event_attributes") for e in window)
        activities = sum(e.HasField("activity_task_scheduled_event_attributes") for e in window)
        markers = sum(
            e.HasField("marker_recorded_event_attributes") for e in window
        )  # local activities
        assert (tasks, activities, markers) == (2, 1, 0)
        # The UI names each timer after what it waits for.
        timer = after[next_timer]
        summary = DATA_CONVERTER.payload_converter.from_payload(timer.user_metadata.summary, str)
        assert summary == "wait 2 days, then nudge 3 for step 1"


async def test_a_broken_plan_does_not_hold_up_the_others(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """A plan whose mirror writes keep failing (its lead row is gone) retries on its own;
    the other plans on the same worker are reminded on time."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        ghost = await rig.start(999_999, approved=True, schedule=ANYTIME)  # no such lead row
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, step_reminded(1, 1))
        # Still answers queries between its retries, and has sent nothing.
        ghost_state = await ghost.query(EngagementPlanWorkflow.state)
        assert ghost_state.steps[0].status == StepStatus.PENDING
        assert len(telegram.sent(OWNER)) == 1
