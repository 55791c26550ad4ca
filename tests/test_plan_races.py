"""Owner actions at awkward moments (issue: a plan never gets stuck, resurrected or doubled).

Each test is one scenario that broke the workflow before its handlers became
synchronous state changes over `PlanRules`; the number in the name is the issue's.
Every test also checks that no workflow task ever failed: a failing task is retried
forever, and for the salesperson the plan is silently dead.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import PendingActivityState, WorkflowTaskFailedCause
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from emulators.telegram.faults import Fault
from storage.leads import LeadRepository
from storage.models import LeadStatus
from tests.rig import ANYTIME, OWNER, PlanRig, describe_raw, eventually, plan_rig
from tests.test_engagement_plan import (
    advance,
    advance_to,
    answer,
    log_types,
    reminders_to,
    step_reminded,
)
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
    StepStatus,
)

FIVE = [
    PlanStep(step_id=i, action_type="call", description=f"Call {i}", delay_days=i)
    for i in range(1, 6)
]


async def task_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Every workflow task our code failed (it raised, or was nondeterministic), with its
    message. Not counted: failures the server causes and simply redoes, such as "unhandled
    command" when a signal arrives while the task completes."""
    ours = (
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR,
    )
    events = (await handle.fetch_history()).events
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in events
        if e.HasField("workflow_task_failed_event_attributes")
        and e.workflow_task_failed_event_attributes.cause in ours
    ]


async def send_in_flight(handle: WorkflowHandle[Any, Any], held: Fault) -> None:
    """Wait until a send_reminder attempt is running and its HTTP call, `held` by the
    emulator, reached Telegram: past its last check that the reminder is still wanted."""

    async def check() -> bool:
        desc = await describe_raw(handle)
        return held.hits > 0 and any(
            a.activity_type.name == "send_reminder"
            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in desc.pending_activities
        )

    await eventually(check)


async def settled(rig: PlanRig, handle: WorkflowHandle[Any, Any]) -> PlanState:
    """The state once no send is in flight and the mirror caught up."""

    async def check() -> PlanState | None:
        desc = await describe_raw(handle)
        if any(a.activity_type.name == "send_reminder" for a in desc.pending_activities):
            return None
        state: PlanState = await handle.query(EngagementPlanWorkflow.state)
        try:
            await rig.assert_mirror_matches(state)
        except AssertionError:
            return None
        return state

    return await eventually(check)


async def test_1_regenerate_right_after_start_drafts_without_breaking(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, steps=FIVE)
        state = await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest()
        )
        assert state.drafting and state.plan_version == 1  # accepted at once
        await rig.wait_state(handle, lambda s: s.plan_version == 2 and not s.drafting)
        state = await settled(rig, handle)
        assert state.status == PlanStatus.AWAITING_APPROVAL and len(state.steps) >= 5
        await telegram.wait_for_message(OWNER, "plan")
        old = await pool.fetch(
            "SELECT status FROM scheduled_reminders WHERE lead_id=$1 AND plan_version=1", lead
        )
        assert {r["status"] for r in old} == {"cancelled"}
        # Approving the draft the owner saw (v2) starts it; a stale v1 approval is refused.
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                EngagementPlanWorkflow.approve, ApproveRequest(plan_version=1)
            )
        assert rejection_of(err.value) == Rejection.ALREADY_HANDLED
        state = await handle.execute_update(
            EngagementPlanWorkflow.approve, ApproveRequest(plan_version=2)
        )
        assert state.status == PlanStatus.ACTIVE and state.current_step_id is not None
        await settled(rig, handle)
        assert await task_failures(handle) == []


async def test_2_snooze_while_a_nudge_is_in_flight_is_not_undone(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, step_reminded(1, 1))
        held = telegram.delay_next("sendMessage", 3)
        await advance(ts_env, timedelta(hours=24, seconds=1))
        await send_in_flight(handle, held)
        state = await handle.execute_update(
            EngagementPlanWorkflow.snooze_step,
            SnoozeAction(step_id=1, plan_version=1, days=3),
        )
        due = state.steps[0].due_at
        await eventually(lambda: asyncio.sleep(0, result=len(reminders_to(telegram, OWNER)) == 2))
        state = await rig.wait_state(handle, lambda s: s.steps[0].last_reminded_at is not None)
        state = await settled(rig, handle)
        step = state.steps[0]
        # The nudge went out and is recorded, but the snooze stands: a fresh round, due in 3 days.
        assert (step.status, step.snooze_count, step.reminder_count) == (StepStatus.PENDING, 1, 0)
        assert step.due_at == due
        assert len(reminders_to(telegram, OWNER)) == 2
        row = await pool.fetchrow(
            "SELECT message_id FROM scheduled_reminders WHERE lead_id=$1 AND step_id=1", lead
        )
        assert row["message_id"] == telegram.sent(OWNER)[-1].message_id
        await advance(ts_env, timedelta(days=2, hours=23))
        assert len(reminders_to(telegram, OWNER)) == 2  # nothing until the snooze ends
        await advance_to(ts_env, due)
        await rig.wait_state(handle, step_reminded(1, 1))
        assert await task_failures(handle) == []


async def test_2_snooze_during_the_first_reminder_and_replace_during_a_send(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        telegram.add_user(OWNER)
        held = telegram.delay_next("sendMessage", 3)
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await send_in_flight(handle, held)
        await handle.execute_update(
            EngagementPlanWorkflow.snooze_step, SnoozeAction(step_id=1, plan_version=1, days=1)
        )
        await eventually(lambda: asyncio.sleep(0, result=len(reminders_to(telegram, OWNER)) == 1))
        state = await settled(rig, handle)
        assert (state.steps[0].status, state.steps[0].snooze_count) == (StepStatus.PENDING, 1)

        # The snoozed step is reminded again; the plan is replaced while that send is held.
        held = telegram.delay_next("sendMessage", 3)
        await advance_to(ts_env, state.steps[0].due_at)
        await send_in_flight(handle, held)
        state = await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=FIVE)
        )
        await eventually(lambda: asyncio.sleep(0, result=len(reminders_to(telegram, OWNER)) == 2))
        state = await settled(rig, handle)
        new_first = state.steps[0]
        # The old plan's send does not mark the new plan's step 1 as sent.
        assert state.plan_version == 2
        assert (new_first.status, new_first.message_id, new_first.reminder_count) == (
            StepStatus.PENDING,
            None,
            0,
        )
        await advance_to(ts_env, new_first.due_at)
        await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        assert len(reminders_to(telegram, OWNER)) == 3
        assert await task_failures(handle) == []


async def test_3_stop_while_a_replacement_is_drafted_stays_stopped(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
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
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, steps=FIVE)
        llm.hang(2)
        await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
        await eventually(lambda: asyncio.sleep(0, result=len(llm.requests) == 1))
        await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="lead closed_won"))
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        await asyncio.sleep(2.5)  # the held draft answers after the plan has ended
        rows = await pool.fetch("SELECT status FROM scheduled_reminders WHERE lead_id=$1", lead)
        assert rows and {r["status"] for r in rows} == {"cancelled"}
        assert await task_failures(handle) == []


async def test_4_a_closed_lead_gets_no_new_plan(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The planner refuses to draft for a closed lead; the plan ends instead of waiting."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        await LeadRepository(pool).set_status(lead, OWNER, LeadStatus.CLOSED_WON)
        handle = await rig.start(lead, steps=None, schedule=ANYTIME)
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        assert reminders_to(telegram, OWNER) == []
        assert not [m for m in telegram.sent(OWNER) if "Start plan" in str(m.buttons)]
        assert await task_failures(handle) == []


async def test_5_block_then_resume_never_bursts(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, step_reminded(1, 1))
        first = state.steps[0].last_reminded_at
        assert first is not None
        # Blocked at the first nudge; unblocked and resumed four days later.
        telegram.block(OWNER)
        await advance(ts_env, timedelta(hours=24, seconds=2))
        await rig.wait_state(handle, lambda s: s.status == PlanStatus.BLOCKED)
        await advance(ts_env, timedelta(days=4))
        telegram.unblock(OWNER)
        await handle.execute_update(EngagementPlanWorkflow.resume)
        state = await rig.wait_state(handle, step_reminded(1, 2))
        second = state.steps[0].last_reminded_at
        assert second is not None
        # The next nudge counts 48 h from the reminder actually sent, the auto-snooze 24 h more.
        await advance(ts_env, timedelta(hours=47))
        assert len(reminders_to(telegram, OWNER)) == 2
        await advance(ts_env, timedelta(hours=1, seconds=2))
        state = await rig.wait_state(handle, step_reminded(1, 3))
        assert state.steps[0].last_reminded_at - second >= timedelta(hours=48)  # type: ignore[operator]
        await advance(ts_env, timedelta(hours=23))
        assert state.steps[0].snooze_count == 0
        assert "No answer" not in " ".join(m.text or "" for m in telegram.sent(OWNER))

        assert await task_failures(handle) == []


async def test_5_a_delivery_outage_never_bursts(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Telegram holds the first nudge back until past the auto-snooze time: when it goes
    out, the round goes on with its spacing from there.

    (A worker outage takes the same path: the nudge is simply late. The time-skipping
    server cannot skip time while a workflow task waits for a worker, so Telegram's side
    stands in for it here; test_operating runs a real worker outage on the dev server.)
    """
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        first = (await rig.wait_state(handle, step_reminded(1, 1))).steps[0].last_reminded_at
        assert first is not None
        # One 429 that holds the nudge back 70 hours, past the old third-reminder time.
        telegram.fail_next("sendMessage", 429, retry_after=70 * 3600)
        for _ in range(10):
            await advance(ts_env, timedelta(hours=10))
        await advance(ts_env, timedelta(hours=1))
        state = await rig.wait_state(handle, step_reminded(1, 2))
        late = state.steps[0].last_reminded_at
        assert late is not None and late - first > timedelta(hours=90)
        # Not the old clock's third reminder and auto-snooze right away: 48 h from the late one.
        assert len(reminders_to(telegram, OWNER)) == 2
        await advance_to(ts_env, late + timedelta(hours=47))
        assert len(reminders_to(telegram, OWNER)) == 2
        await advance_to(ts_env, late + timedelta(hours=48))
        state = await rig.wait_state(handle, step_reminded(1, 3))
        assert state.steps[0].snooze_count == 0
        assert await task_failures(handle) == []


async def test_6_a_send_overtaken_by_an_action_still_reaches_the_rows(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        telegram.add_user(OWNER)
        held = telegram.delay_next("sendMessage", 3)
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await send_in_flight(handle, held)
        await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
        state = await rig.wait_state(handle, step_reminded(1, 1))
        state = await settled(rig, handle)
        assert state.status == PlanStatus.PAUSED
        assert state.steps[0].status == StepStatus.SENT
        row = await pool.fetchrow(
            "SELECT status, message_id FROM scheduled_reminders WHERE lead_id=$1 AND step_id=1",
            lead,
        )
        assert (row["status"], row["message_id"]) == ("sent", state.steps[0].message_id)
        assert row["message_id"] is not None
        assert await task_failures(handle) == []


async def test_7_snooze_while_paused_counts_the_pause_once(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, step_reminded(1, 1))
        await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
        await advance(ts_env, timedelta(days=2))
        snoozed_at = await ts_env.get_current_time()
        await handle.execute_update(
            EngagementPlanWorkflow.snooze_step, SnoozeAction(step_id=1, plan_version=1, days=3)
        )
        await advance(ts_env, timedelta(days=2))
        resumed_at = await ts_env.get_current_time()
        state = await handle.execute_update(EngagementPlanWorkflow.resume)
        due = state.steps[0].due_at
        assert due is not None
        # Three plan days after the snooze, plus only the pause that followed it.
        expected = snoozed_at + timedelta(days=3) + (resumed_at - snoozed_at)
        assert abs(due - expected) < timedelta(seconds=10)
        assert await task_failures(handle) == []


async def test_8_a_cancel_while_waiting_to_continue_as_new_is_kept(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, history_event_limit=100)
        await rig.wait_state(handle, step_reminded(1, 1))
        schedule = ANYTIME
        # Cheap updates until the history is just short of the limit.
        while len((await handle.fetch_history()).events) < 92:
            schedule = Schedule(
                **{**schedule.model_dump(), "workdays_only": not schedule.workdays_only}
            )
            await handle.execute_update(EngagementPlanWorkflow.set_schedule, schedule)
        # The next update's mirror write is held by a lock, so the loop, seeing a long
        # history, waits for it before continuing as new; the cancel arrives meanwhile.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE scheduled_reminders IN ACCESS EXCLUSIVE MODE")
            update = await handle.start_update(
                EngagementPlanWorkflow.set_schedule,
                ANYTIME,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="stop"))
        await update.result()
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        rows = await pool.fetch("SELECT status FROM scheduled_reminders WHERE lead_id=$1", lead)
        assert {r["status"] for r in rows} == {"cancelled"}
        assert await task_failures(handle) == []


async def test_10_approve_names_the_draft_it_starts(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, schedule=ANYTIME)
        await rig.wait_state(handle, lambda s: s.revision > 0)
        await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=FIVE)
        )
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                EngagementPlanWorkflow.approve, ApproveRequest(plan_version=1)
            )
        assert rejection_of(err.value) == Rejection.ALREADY_HANDLED
        state = await handle.query(EngagementPlanWorkflow.state)
        assert (state.status, state.plan_version) == (PlanStatus.AWAITING_APPROVAL, 2)
        assert await task_failures(handle) == []


async def test_11_a_refused_send_of_a_replaced_or_paused_plan_changes_nothing(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        telegram.add_user(OWNER)
        six = [*FIVE, PlanStep(step_id=6, action_type="call", description="Call 6", delay_days=6)]
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, steps=six)
        await advance(ts_env, timedelta(days=1, seconds=2))
        state = await rig.wait_state(handle, step_reminded(1, 1))
        for _ in range(5):
            state = await answer(handle, EngagementPlanWorkflow.skip_step, state)
        # Step 6's reminder is held, the owner blocks the bot and replaces the plan with 5 steps.
        held = telegram.delay_next("sendMessage", 3)
        await advance_to(ts_env, state.steps[5].due_at)
        await send_in_flight(handle, held)
        telegram.block(OWNER)
        await handle.execute_update(
            EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=FIVE)
        )
        state = await settled(rig, handle)
        assert (state.status, state.plan_version) == (PlanStatus.ACTIVE, 2)

        # A paused plan whose send is refused stays paused, with its vacation end.
        telegram.unblock(OWNER)
        held = telegram.delay_next("sendMessage", 3)
        await advance_to(ts_env, state.steps[0].due_at)
        await send_in_flight(handle, held)
        telegram.block(OWNER)
        back = await ts_env.get_current_time() + timedelta(days=10)
        await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest(until=back))
        state = await settled(rig, handle)
        assert (state.status, state.paused_until) == (PlanStatus.PAUSED, back)
        assert await task_failures(handle) == []


async def test_12_a_lead_closed_without_the_signal_is_never_reminded(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Temporal was unreachable when the lead was closed: the send finds it closed and the
    plan ends itself (the bot also retries the signal)."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, steps=FIVE)
        await LeadRepository(pool).set_status(lead, OWNER, LeadStatus.CLOSED_LOST)
        await advance(ts_env, timedelta(days=1, seconds=5))
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        assert reminders_to(telegram, OWNER) == []
        assert "plan_cancelled" in await log_types(pool, lead)


async def test_13_a_temporal_cancellation_is_a_clean_stop(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, step_reminded(1, 1))
        await handle.cancel()
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        assert summary.reason and "Temporal" in summary.reason
        rows = await pool.fetch("SELECT status FROM scheduled_reminders WHERE lead_id=$1", lead)
        assert {r["status"] for r in rows} == {"cancelled"}
        assert "plan_cancelled" in await log_types(pool, lead)
        assert await task_failures(handle) == []
