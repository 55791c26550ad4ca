"""Randomized model-based testing of the plan workflow on the real (time-skipping) server.

A seeded generator draws sequences of owner actions (approve, done, skip, snooze,
stale taps, pause with and without an end, resume, schedule changes, replace with
steps or a fresh draft, cancel, closing the lead), Telegram faults (429, 5xx, 403 then
unblock, sends held while the next action arrives), worker restarts and time jumps.
They run against the real workers, PostgreSQL and the Telegram emulator. `Model`, a
plain-Python reference of the plan's abstract state (status, version, current step,
drafting), predicts whether each action is accepted or refused and what the plan looks
like afterwards. After every action the invariants are checked:

- no WorkflowTaskFailed event in the history, ever;
- at quiescence the mirror rows equal the `state` query, and the state agrees with the model;
- `NextDueAt` is set exactly while the plan is active;

and at the end of each sequence:

- at most `max_reminders` reminders per round, never two of one step closer than the
  nudge spacing (from the send times in the history);
- nothing is sent after cancel, close or completion;
- a plan whose owner then answers everything completes.

CI runs `LEADPILOT_MODEL_CASES` sequences (default 6); a soak sets it higher and may set
`LEADPILOT_MODEL_SEED`. A failure prints the seed and the shrunk action sequence.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from storage.leads import LeadRepository
from storage.models import LeadStatus
from temporal_converter import DATA_CONVERTER
from tests.rig import ANYTIME, OWNER, STEPS, PlanRig, describe_raw, plan_rig
from tests.test_engagement_plan import search_attribute
from tests.test_plan_races import task_failures
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.errors import Rejection, rejection_of
from workflows.models import (
    ApproveRequest,
    CancelRequest,
    PauseRequest,
    PlanState,
    PlanStatus,
    ReminderRequest,
    ReminderResult,
    ReplacePlanRequest,
    Schedule,
    SnoozeAction,
    StepAction,
    StepStatus,
)

CASES = int(os.environ.get("LEADPILOT_MODEL_CASES", "6"))
SEED = int(os.environ.get("LEADPILOT_MODEL_SEED", "20261128"))
ACTIONS_PER_CASE = 18
TRACE = bool(os.environ.get("LEADPILOT_MODEL_TRACE"))
# Replay one printed sequence instead of drawing: LEADPILOT_MODEL_ACTIONS="done(5) pause ..."
ACTIONS = os.environ.get("LEADPILOT_MODEL_ACTIONS")
NUDGE_SPACING = timedelta(hours=24)

SCHEDULES = [
    ANYTIME,
    Schedule(timezone="Europe/Berlin"),
    Schedule(
        timezone="America/New_York", window_start=time(8), window_end=time(18), workdays_only=True
    ),
]

# (kind, weight): owner actions, faults, time.
KINDS = [
    ("done", 5),
    ("skip", 2),
    ("snooze", 3),
    ("stale", 2),
    ("approve", 3),
    ("approve_stale", 1),
    ("pause", 2),
    ("pause_until", 1),
    ("resume", 3),
    ("schedule", 1),
    ("replace", 1),
    ("regenerate", 2),
    ("cancel", 0.4),
    ("close", 0.4),
    ("advance", 6),
    ("slow_due", 2),
    ("fault_429", 1),
    ("fault_5xx", 1),
    ("block", 1),
    ("unblock", 2),
    ("restart", 0.7),
]


@dataclass(frozen=True)
class Action:
    kind: str
    arg: int = 0

    def __str__(self) -> str:
        return f"{self.kind}({self.arg})" if self.arg else self.kind


def parse(text: str) -> list[Action]:
    """The inverse of `str(Action)` over a printed sequence."""
    out = []
    for word in text.split():
        kind, _, arg = word.partition("(")
        out.append(Action(kind, int(arg.rstrip(")") or 0)))
    return out


def draw(rng: random.Random, n: int) -> list[Action]:
    kinds, weights = zip(*KINDS, strict=True)
    return [Action(k, rng.randint(1, 60)) for k in rng.choices(kinds, weights, k=n)]


@dataclass
class Model:
    """The plan's abstract state as an owner would predict it."""

    status: PlanStatus
    version: int
    steps: int
    current: int | None  # 0-based index of the current step
    drafting: bool
    paused_until: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status not in (PlanStatus.COMPLETED, PlanStatus.CANCELLED)

    @property
    def running(self) -> bool:
        return self.status in (PlanStatus.ACTIVE, PlanStatus.PAUSED, PlanStatus.BLOCKED)


@dataclass
class Case:
    rig: PlanRig
    env: WorkflowEnvironment
    pool: asyncpg.Pool
    telegram: Any
    lead: int
    handle: WorkflowHandle[Any, Any]
    model: Model
    blocked: bool = False
    log: list[str] = field(default_factory=list)

    async def state(self) -> PlanState:
        return await self.handle.query(EngagementPlanWorkflow.state)


class Mismatch(AssertionError):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Mismatch(what)


async def quiesce(case: Case) -> PlanState:
    """Wait until nothing runs (no activity attempt in flight) and the mirror caught up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60  # retries after 5xx back off 2, 4, 8 … seconds
    last: PlanState | None = None
    while True:
        desc = await describe_raw(case.handle)
        busy = any(
            a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in desc.pending_activities
        )
        state = await case.state()
        if not busy and last is not None and state.revision == last.revision:
            try:
                await case.rig.assert_mirror_matches(state)
                return state
            except AssertionError:
                if loop.time() > deadline:
                    raise
        if loop.time() > deadline:
            pending = [
                (a.activity_type.name, a.state, a.attempt, a.last_failure.message)
                for a in desc.pending_activities
            ]
            raise Mismatch(f"plan never settled (state {state.status}, pending {pending})")
        last = state
        await asyncio.sleep(0.1)


async def update(case: Case, name: str, arg: Any, accept: bool, refusal: Rejection | None) -> None:
    """Run one update and check the model's prediction of accepted / refused (and why)."""
    try:
        if arg is None:
            await case.handle.execute_update(name, result_type=PlanState)
        else:
            await case.handle.execute_update(name, arg, result_type=PlanState)
    except RPCError as err:
        # The workflow has ended: Temporal itself refuses the update.
        expect(not accept, f"{name} refused by the server ({err}) but the model accepts it")
        return
    except WorkflowUpdateFailedError as err:
        got = rejection_of(err)
        expect(not accept, f"{name} refused ({got}: {err.cause}) but the model accepts it")
        expect(refusal is None or got == refusal, f"{name} refused as {got}, model says {refusal}")
        return
    expect(accept, f"{name} accepted but the model refuses it ({refusal})")


async def cancel(case: Case, reason: str) -> None:
    """The cancel signal; a plan that has ended refuses it at the server (nothing to stop)."""
    try:
        await case.handle.signal(EngagementPlanWorkflow.cancel, CancelRequest(reason=reason))
    except RPCError as err:
        expect(not case.model.open, f"cancel refused by the server ({err}) for an open plan")


async def run_action(case: Case, action: Action, rng: random.Random) -> None:
    m = case.model
    state = await case.state()
    cur = state.current
    answerable = m.running and m.current is not None
    match action.kind:
        case "done" | "skip" | "snooze":
            if cur is None:
                return
            name = {"done": "complete_step", "skip": "skip_step", "snooze": "snooze_step"}
            arg: Any = (
                SnoozeAction(
                    step_id=cur.step_id, plan_version=state.plan_version, days=1 + action.arg % 3
                )
                if action.kind == "snooze"
                else StepAction(step_id=cur.step_id, plan_version=state.plan_version)
            )
            await update(case, name[action.kind], arg, answerable, None)
            if answerable and action.kind != "snooze":
                assert m.current is not None
                m.current += 1
                if m.current >= m.steps:
                    m.current, m.status = None, PlanStatus.COMPLETED
        case "stale":
            # A button of an earlier version, or of a step that is not the current one.
            if not state.steps:
                return
            step = state.steps[action.arg % len(state.steps)]
            version = state.plan_version - (action.arg % 2)
            fresh = (
                version == m.version
                and m.current is not None
                and step.step_id == (state.steps[m.current].step_id)
            )
            await update(
                case,
                "complete_step",
                StepAction(step_id=step.step_id, plan_version=version),
                answerable and fresh,
                None,
            )
            if answerable and fresh:
                assert m.current is not None
                m.current += 1
                if m.current >= m.steps:
                    m.current, m.status = None, PlanStatus.COMPLETED
        case "approve" | "approve_stale":
            version = m.version - (action.kind == "approve_stale")
            ok = m.open and m.status == PlanStatus.AWAITING_APPROVAL and not m.drafting
            ok = ok and m.steps > 0 and version == m.version
            await update(case, "approve", ApproveRequest(plan_version=version), ok, None)
            if ok:
                m.status, m.current = PlanStatus.ACTIVE, 0
        case "pause" | "pause_until":
            until = None
            if action.kind == "pause_until":
                until = await case.env.get_current_time() + timedelta(hours=action.arg)
            ok = m.open and m.status in (PlanStatus.ACTIVE, PlanStatus.PAUSED)
            await update(case, "pause", PauseRequest(until=until), ok, None)
            if ok:
                m.status, m.paused_until = PlanStatus.PAUSED, until
        case "resume":
            ok = m.open and m.status in (PlanStatus.PAUSED, PlanStatus.BLOCKED)
            why = Rejection.WRONG_STATUS if m.open else Rejection.PLAN_FINISHED
            await update(case, "resume", None, ok, why)
            if ok:
                m.status, m.paused_until = PlanStatus.ACTIVE, None
        case "schedule":
            await update(case, "set_schedule", SCHEDULES[action.arg % 3], m.open, None)
        case "replace":
            steps = STEPS[: 5 + action.arg % 2]
            ok = m.open and not m.drafting
            await update(case, "replace_plan", ReplacePlanRequest(steps=steps), ok, None)
            if ok:
                m.version += 1
                m.steps = len(steps)
                if m.status == PlanStatus.AWAITING_APPROVAL:
                    m.current = None
                else:
                    m.current = 0
                    if m.status == PlanStatus.BLOCKED:
                        m.status = PlanStatus.ACTIVE
        case "regenerate":
            ok = m.open and not m.drafting
            await update(case, "replace_plan", ReplacePlanRequest(), ok, None)
            if ok:
                m.drafting = True
        case "cancel":
            await cancel(case, "model cancel")
            if m.open:
                m.status, m.current, m.drafting = PlanStatus.CANCELLED, None, False
        case "close":
            await LeadRepository(case.pool).set_status(case.lead, OWNER, LeadStatus.CLOSED_LOST)
            await cancel(case, "lead closed_lost")
            if m.open:
                m.status, m.current, m.drafting = PlanStatus.CANCELLED, None, False
        case "advance":
            await case.env.sleep(action.arg * 3600)
        case "slow_due":
            # Hold the next send and jump to the moment it is due; the next action arrives
            # while that send is in flight.
            case.telegram.clear_faults()
            case.telegram.delay_next("sendMessage", 1.5)
            if state.next_due_at is not None:
                now = await case.env.get_current_time()
                await case.env.sleep(max(0.0, (state.next_due_at - now).total_seconds()) + 1)
            return  # no quiescing: the point is to overlap with the next action
        # A new fault replaces an unused one: stacked faults only add retry backoff
        # (2, 4, 8 … s of real time), not new behaviour.
        case "fault_429":
            case.telegram.clear_faults()
            case.telegram.fail_next("sendMessage", 429, retry_after=1)
        case "fault_5xx":
            case.telegram.clear_faults()
            case.telegram.fail_next("sendMessage", 502, count=2)
        case "block":
            case.telegram.block(OWNER)
            case.blocked = True
        case "unblock":
            case.telegram.unblock(OWNER)
            case.blocked = False
        case "restart":
            # A deploy: a fresh worker replays the plan from its history. (These workers
            # keep no sticky cache, so every task is such a replay anyway.)
            await case.rig.stop_workers()
            case.rig.start_workers()
    await check(case)


async def check(case: Case) -> None:
    """Settle, then compare the plan with the model and the invariants."""
    state = await quiesce(case)
    m = case.model
    now = await case.env.get_current_time()
    # Autonomous moves the model cannot time exactly: a draft arriving, a vacation ending,
    # a send refused by a blocked bot. Each must be one the model allows.
    if m.drafting and not state.drafting:
        m.drafting = False
        if state.status == PlanStatus.CANCELLED:
            m.status, m.current = PlanStatus.CANCELLED, None
        elif m.steps == 0:
            m.steps = len(state.steps)
        else:
            m.version += 1
            m.steps = len(state.steps)
            m.status, m.current, m.paused_until = PlanStatus.AWAITING_APPROVAL, None, None
    if m.status == PlanStatus.PAUSED and state.status == PlanStatus.ACTIVE:
        expect(
            m.paused_until is not None and m.paused_until <= now, "a pause ended by itself early"
        )
        m.status, m.paused_until = PlanStatus.ACTIVE, None
    if m.status == PlanStatus.ACTIVE and state.status == PlanStatus.BLOCKED:
        expect(case.blocked, "plan blocked although Telegram delivers")
        m.status = PlanStatus.BLOCKED
    expect(state.status == m.status, f"status {state.status}, model {m.status}")
    expect(state.plan_version == m.version, f"version {state.plan_version}, model {m.version}")
    expect(state.drafting == m.drafting, f"drafting {state.drafting}, model {m.drafting}")
    if m.current is None:
        expect(state.current_step_id is None, f"current step {state.current_step_id}, model none")
    else:
        expect(
            m.current < len(state.steps)
            and state.current_step_id == state.steps[m.current].step_id,
            f"current step {state.current_step_id}, model index {m.current}",
        )
    failures = await task_failures(case.handle)
    expect(not failures, f"workflow task failed: {failures[:1]}")
    if state.status not in (PlanStatus.COMPLETED, PlanStatus.CANCELLED):
        next_due = await search_attribute(case.handle, "NextDueAt")
        active = state.status == PlanStatus.ACTIVE and state.next_due_at is not None
        expect((next_due is not None) == active, f"NextDueAt {next_due} while {state.status}")


async def finish(case: Case) -> None:
    """The owner answers everything from now on: an open plan must complete."""
    t, m = case.telegram, case.model
    t.clear_faults()
    t.unblock(OWNER)
    case.blocked = False
    for _ in range(40):
        state = await quiesce(case)
        if state.status in (PlanStatus.COMPLETED, PlanStatus.CANCELLED):
            break
        if state.drafting:
            await asyncio.sleep(0.2)
            await check(case)
        elif state.status in (PlanStatus.PAUSED, PlanStatus.BLOCKED):
            await run_action(case, Action("resume"), random.Random(0))
        elif state.status == PlanStatus.AWAITING_APPROVAL:
            await run_action(case, Action("approve"), random.Random(0))
        elif state.current is not None and state.current.status == StepStatus.SENT:
            await run_action(case, Action("done"), random.Random(0))
        elif state.next_due_at is not None:
            now = await case.env.get_current_time()
            await case.env.sleep(max(0.0, (state.next_due_at - now).total_seconds()) + 1)
            await check(case)
    state = await quiesce(case)
    expect(
        state.status in (PlanStatus.COMPLETED, PlanStatus.CANCELLED) and m.status == state.status,
        f"an answered plan did not finish: {state.status}",
    )
    # Nothing is sent once the plan has ended.
    sent = len(t.sent(OWNER))
    await case.env.sleep(10 * 86400)
    await asyncio.sleep(0.3)
    expect(len(t.sent(OWNER)) == sent, "a message went out after the plan ended")


async def check_spacing(case: Case) -> None:
    """From the history: per round at most max_reminders, never two closer than the spacing."""
    events = (await case.handle.fetch_history()).events
    scheduled: dict[int, ReminderRequest] = {}
    sends: dict[tuple[int, int, int], list[datetime]] = {}
    for e in events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            attrs = e.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "send_reminder":
                (req,) = DATA_CONVERTER.payload_converter.from_payloads(
                    attrs.input.payloads, [ReminderRequest]
                )
                scheduled[e.event_id] = req
        elif e.HasField("activity_task_completed_event_attributes"):
            done = e.activity_task_completed_event_attributes
            req = scheduled.get(done.scheduled_event_id)
            if req is None:
                continue
            (result,) = DATA_CONVERTER.payload_converter.from_payloads(
                done.result.payloads, [ReminderResult]
            )
            if result.not_sent is not None:
                continue  # withheld: nothing reached the owner
            step = req.step
            key = (req.state.plan_version, step.step_id, step.snooze_count)
            sends.setdefault(key, []).append(e.event_time.ToDatetime())
    for key, times in sends.items():
        expect(len(times) <= 3, f"{len(times)} reminders in one round {key}")
        for a, b in itertools.pairwise(times):
            expect(b - a >= NUDGE_SPACING - timedelta(seconds=5), f"reminders {b - a} apart {key}")


async def play(
    env: WorkflowEnvironment,
    rig: PlanRig,
    pool: asyncpg.Pool,
    telegram: Any,
    seed: int,
    actions: list[Action],
) -> None:
    rng = random.Random(seed)
    telegram.clear_faults()
    telegram.unblock(OWNER)
    lead = await rig.new_lead(name=f"Case {seed}")
    drafted = rng.random() < 0.4
    if drafted:
        handle = await rig.start(lead, steps=None, schedule=ANYTIME)
        model = Model(PlanStatus.AWAITING_APPROVAL, 1, 0, None, drafting=True)
    else:
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        model = Model(PlanStatus.ACTIVE, 1, len(STEPS), 0, drafting=False)
    case = Case(rig, env, pool, telegram, lead, handle, model)
    await check(case)
    for action in actions:
        case.log.append(str(action))
        if TRACE:
            print("  ", seed, action, flush=True)
        await run_action(case, action, rng)
    await finish(case)
    await check_spacing(case)


async def fails(
    env: WorkflowEnvironment,
    rig: PlanRig,
    pool: asyncpg.Pool,
    telegram: Any,
    seed: int,
    actions: list[Action],
) -> BaseException | None:
    try:
        await asyncio.wait_for(play(env, rig, pool, telegram, seed, actions), 120)
    except Exception as err:  # any failure is reported with its seed and sequence
        return err
    return None


async def shrink(
    env: WorkflowEnvironment,
    rig: PlanRig,
    pool: asyncpg.Pool,
    telegram: Any,
    seed: int,
    actions: list[Action],
) -> list[Action]:
    """Drop actions one at a time while the sequence still fails (bounded effort)."""
    i, tries = 0, 0
    while i < len(actions) and tries < 12:
        candidate = actions[:i] + actions[i + 1 :]
        tries += 1
        if await fails(env, rig, pool, telegram, seed, candidate):
            actions = candidate
        else:
            i += 1
    return actions


async def test_random_owner_actions_faults_and_time_match_the_model(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    telegram.add_user(OWNER)
    ran = 0
    async with plan_rig(ts_env.client, db_url, pool, telegram, max_cached_workflows=0) as rig:
        for n in range(CASES):
            seed = SEED + n
            actions = parse(ACTIONS) if ACTIONS else draw(random.Random(seed), ACTIONS_PER_CASE)
            err = await fails(ts_env, rig, pool, telegram, seed, actions)
            if err is not None:
                small = await shrink(ts_env, rig, pool, telegram, seed, actions)
                pytest.fail(
                    f"seed {seed}: {err}\n"
                    f"actions: {' '.join(map(str, actions))}\n"
                    f"shrunk: {' '.join(map(str, small))}\n"
                    f"rerun: LEADPILOT_MODEL_SEED={seed} LEADPILOT_MODEL_CASES=1"
                    f" LEADPILOT_MODEL_ACTIONS='{' '.join(map(str, small))}'"
                )
            ran += len(actions)
    print(f"model-based: {CASES} sequences, {ran} actions, all invariants held")
