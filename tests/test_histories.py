"""Histories recorded from released workflow code must keep replaying (versioning).

Each JSON file in tests/histories/ is one released shape of a plan's history. A change
to the workflow that alters its command sequence for any of them must sit behind
`workflow.patched`, or this test fails. Files are never overwritten: record a new
shape with `LEADPILOT_RECORD_HISTORY=1 ./scripts/test tests/test_histories.py`, which
writes only the files that are missing.

`draft_regenerate_approve`, `draft_refused_then_regenerated`, `regenerate_running_plan`
and `regenerate_refused_while_running` were recorded from c1797ec, the release that still
drafted inside the handler (the recorder there was a one-off copy of these scenarios);
`cancelled_in_temporal` (a cancel request from the UI or CLI) and
`snooze_schedule_continue_as_new` too. The `drafts_in_loop*`
files are the same journeys as the code drafts now.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from emulators.openai_server import OpenAIEmulator
from tests.rig import ANYTIME, OWNER, STEPS, PlanRig, plan_rig
from tests.test_engagement_plan import advance, answer, plan_replayer, step_is
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import (
    CancelRequest,
    PauseRequest,
    PlanStatus,
    PlanStep,
    ReplacePlanRequest,
    StepStatus,
)

HISTORIES = Path(__file__).parent / "histories"
RECORD = bool(os.environ.get("LEADPILOT_RECORD_HISTORY"))

Scenario = Callable[[PlanRig, WorkflowEnvironment, OpenAIEmulator], Awaitable[Any]]


async def escalation_and_auto_snooze(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await advance(env, timedelta(hours=25))
    await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 2)
    await advance(env, timedelta(hours=49))
    await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 3)
    await advance(env, timedelta(hours=25))
    await rig.wait_state(handle, lambda s: s.steps[0].snooze_count == 1)
    await advance(env, timedelta(days=7, hours=1))
    state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    return handle


async def escalation_with_send_lead(
    rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator
) -> Any:
    """Every reminder woken a send lead ahead of its due time (plans started since)."""
    handle = await rig.start(
        await rig.new_lead(), approved=True, schedule=ANYTIME, send_lead_seconds=2.0
    )
    state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    await advance(env, timedelta(days=2, hours=1))
    await rig.wait_state(handle, lambda s: s.steps[1].status == StepStatus.SENT)
    await advance(env, timedelta(hours=25))
    state = await rig.wait_state(handle, lambda s: s.steps[1].reminder_count == 2)
    await answer(handle, EngagementPlanWorkflow.skip_step, state)
    return handle


async def pause_and_resume(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    await advance(env, timedelta(days=1))
    await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
    await advance(env, timedelta(days=3))
    await handle.execute_update(EngagementPlanWorkflow.resume)
    await advance(env, timedelta(hours=6))
    back = await env.get_current_time() + timedelta(days=2)
    await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest(until=back))
    await advance(env, timedelta(days=2, hours=1))
    await rig.wait_state(handle, lambda s: s.status == PlanStatus.ACTIVE)
    await advance(env, timedelta(days=1))
    await rig.wait_state(handle, lambda s: s.steps[1].status == StepStatus.SENT)
    return handle


async def replace_plan_after_a_send(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    new_steps = [
        PlanStep(step_id=i, action_type="call", description=f"Call {i}", delay_days=i)
        for i in range(1, 6)
    ]
    await handle.execute_update(
        EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=new_steps)
    )
    await advance(env, timedelta(days=1, hours=1))
    state = await rig.wait_state(
        handle, lambda s: s.plan_version == 2 and s.steps[0].status == StepStatus.SENT
    )
    await answer(handle, EngagementPlanWorkflow.skip_step, state)
    return handle


async def cancel_while_escalating(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await advance(env, timedelta(hours=25))
    await rig.wait_state(handle, lambda s: s.steps[0].reminder_count == 2)
    await handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason="lead closed_lost"))
    await handle.result()
    return handle


async def blocked_then_resumed(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    rig.telegram.add_user(OWNER)
    rig.telegram.block(OWNER)
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: s.status == PlanStatus.BLOCKED)
    rig.telegram.unblock(OWNER)
    await handle.execute_update(EngagementPlanWorkflow.resume)
    state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    return handle


async def drafts_in_loop(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    """Drafted, regenerated before approval, approved; then regenerated while it runs."""
    handle = await rig.start(await rig.new_lead(), steps=None, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: len(s.steps) >= 5 and not s.drafting)
    await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
    await rig.wait_state(handle, lambda s: s.plan_version == 2 and not s.drafting)
    await handle.execute_update(EngagementPlanWorkflow.approve)
    state = await rig.wait_state(handle, step_is(1, StepStatus.SENT))
    await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
    await rig.wait_state(handle, lambda s: s.plan_version == 3 and not s.drafting)
    await handle.execute_update(EngagementPlanWorkflow.approve)
    state = await rig.wait_state(
        handle, lambda s: s.plan_version == 3 and s.steps[0].status == StepStatus.SENT
    )
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    return handle


async def drafts_in_loop_refused(
    rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator
) -> Any:
    """The first draft is refused, Regenerate succeeds; a refused Regenerate of the running
    plan leaves it running."""
    llm.refuse("I can't help with that.")
    handle = await rig.start(await rig.new_lead(), steps=None, schedule=ANYTIME)
    await rig.wait_state(handle, lambda s: s.last_error is not None and not s.drafting)
    await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
    await rig.wait_state(handle, lambda s: len(s.steps) >= 5 and not s.drafting)
    await handle.execute_update(EngagementPlanWorkflow.approve)
    await rig.wait_state(handle, step_is(1, StepStatus.SENT))
    llm.refuse("I can't help with that.")
    await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
    state = await rig.wait_state(handle, lambda s: s.last_error is not None and not s.drafting)
    await answer(handle, EngagementPlanWorkflow.complete_step, state)
    return handle


async def cancel_request_ends_the_plan(
    rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator
) -> Any:
    """A cancel request from the UI or CLI closes the rows and completes with a summary."""
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
    await rig.wait_state(handle, step_is(1, StepStatus.SENT))
    await handle.cancel()
    await handle.result()
    return handle


async def completed_by_answers(rig: PlanRig, env: WorkflowEnvironment, llm: OpenAIEmulator) -> Any:
    """The last Done completes the plan; the run then sends "all steps done"
    (PATCH_NOTICE_AFTER_ANSWER; `three_week_plan` is the shape from before it)."""
    steps = STEPS[:3]
    handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME, steps=steps)
    for i, step in enumerate(steps):
        state = await rig.wait_state(handle, step_is(step.step_id, StepStatus.SENT))
        await answer(handle, EngagementPlanWorkflow.complete_step, state)
        if i + 1 < len(steps):
            gap = steps[i + 1].delay_days - step.delay_days
            await advance(env, timedelta(days=gap, hours=1))
    await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "cancel_request_ends_the_plan": cancel_request_ends_the_plan,
    "completed_by_answers": completed_by_answers,
    "drafts_in_loop": drafts_in_loop,
    "drafts_in_loop_refused": drafts_in_loop_refused,
    "escalation_auto_snooze": escalation_and_auto_snooze,
    "escalation_with_send_lead": escalation_with_send_lead,
    "pause_resume": pause_and_resume,
    "replace_plan_after_send": replace_plan_after_a_send,  # before PATCH_ONE_MIRROR_PER_REPLACE
    "replace_plan_one_mirror": replace_plan_after_a_send,
    "cancel_while_escalating": cancel_while_escalating,
    "blocked_resume": blocked_then_resumed,
}


@pytest.mark.skipif(not RECORD, reason="set LEADPILOT_RECORD_HISTORY=1 to record missing histories")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_record_history(
    name: str, ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    target = HISTORIES / f"{name}.json"
    if target.exists():
        pytest.skip(f"{target.name} is released; record a new shape under a new name")
    async with contextlib.AsyncExitStack() as stack:
        llm = await stack.enter_async_context(OpenAIEmulator(api_key="sk-test"))
        llm_settings = {"openai_api_key": "sk-test", "openai_base_url": llm.base_url}
        rig = await stack.enter_async_context(
            plan_rig(ts_env.client, db_url, pool, telegram, **llm_settings)
        )
        handle = await SCENARIOS[name](rig, ts_env, llm)
        history = await handle.fetch_history()
    await plan_replayer().replay_workflow(history)
    target.write_text(history.to_json())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_released_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"lead-{path.stem}", path.read_text())
    assert len(history.events) > 10
    asyncio.run(plan_replayer().replay_workflow(history))
