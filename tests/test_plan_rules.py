"""The plan's transition rules without Temporal: pure functions of state and time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError

from tests.rig import ANYTIME, STEPS
from workflows.errors import Rejection, rejection_of
from workflows.models import (
    EscalationPolicy,
    PlanState,
    PlanStatus,
    StepAction,
    StepState,
    StepStatus,
)
from workflows.plan_rules import DueKind, PlanRules

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def rules(spaced: bool = True) -> PlanRules:
    state = PlanState(lead_id=1, telegram_id=2, schedule=ANYTIME)
    state.steps = [StepState.from_step(s) for s in STEPS]
    return PlanRules(state, EscalationPolicy(), 86400, spaced)


def started(spaced: bool = True) -> PlanRules:
    r = rules(spaced)
    r.activate(T0)
    return r


def sent(r: PlanRules, at: datetime) -> None:
    cur = r.state.current
    assert cur is not None
    assert r.record_send(r.ticket(cur), at, 100)


def refusal(fn: object, *args: object) -> Rejection | None:
    with pytest.raises(ApplicationError) as err:
        fn(*args)  # type: ignore[operator]
    return rejection_of(err.value)


def test_next_wake_is_total_over_every_status_and_step_state() -> None:
    """Whatever a handler leaves behind, the loop gets an answer, never an exception."""
    for status, step_status, current, anchor in itertools.product(
        PlanStatus, StepStatus, (None, 1, 99), (None, T0)
    ):
        r = started()
        st = r.state
        st.status, st.current_step_id, st.escalate_from = status, current, anchor
        st.round_started_at = anchor
        st.steps[0].status = step_status
        st.steps[0].due_at = None
        for spaced in (True, False):
            r.spaced = spaced
            r.next_wake()
            r.due(T0 + 1000 * H)


def test_nudges_count_from_the_reminder_actually_sent() -> None:
    r = started()
    sent(r, T0)
    assert r.next_wake() == T0 + 24 * H
    late = T0 + 100 * H  # an outage or a block delayed the first nudge
    sent(r, late)
    assert r.next_wake() == late + 48 * H  # never bunched with the next one
    sent(r, late + 48 * H)
    assert r.next_wake() == late + 72 * H
    due = r.due(late + 72 * H)
    assert due is not None and due.kind == DueKind.AUTO_SNOOZE


def test_recorded_plans_keep_the_round_start_clock() -> None:
    r = started(spaced=False)
    sent(r, T0)
    sent(r, T0 + 24 * H + timedelta(seconds=3))
    assert r.next_wake() == T0 + 72 * H
    sent(r, T0 + 72 * H)
    assert r.next_wake() == T0 + 96 * H


def test_a_pause_shifts_the_pending_step_and_the_escalation_clock() -> None:
    r = started()
    r.pause(T0 + H, None)
    assert r.next_wake() is None
    r.resume(T0 + 11 * H)
    assert r.state.current and r.state.current.due_at == T0 + 10 * H
    sent(r, T0 + 10 * H)
    r.pause(T0 + 12 * H, None)
    r.resume(T0 + 22 * H)
    assert r.next_wake() == T0 + 10 * H + 24 * H + 10 * H


def test_snooze_while_paused_counts_only_the_pause_after_it() -> None:
    r = started()
    sent(r, T0)
    r.pause(T0 + H, None)
    step = r.state.current
    assert step is not None
    r.snooze(step, T0 + 49 * H + 72 * H, T0 + 49 * H)  # snooze 3 days, two days into the pause
    r.resume(T0 + 97 * H)
    assert step.due_at == T0 + 49 * H + 72 * H + 48 * H


def test_answering_the_last_step_completes_and_an_absent_step_never_raises() -> None:
    r = started()
    for step in r.state.steps:
        r.state.current_step_id = step.step_id
        r.resolve(step, StepStatus.COMPLETED, T0)
    assert r.state.status == PlanStatus.COMPLETED and r.state.current_step_id is None
    r = started()
    ghost = StepState(step_id=42, action_type="x", description="x", delay_days=0)
    r.resolve(ghost, StepStatus.SKIPPED, T0)  # a step of no plan: completes, no IndexError
    assert r.state.position(42) == 0


def test_a_send_is_recorded_against_what_it_was_for() -> None:
    r = started()
    cur = r.state.current
    assert cur is not None
    ticket = r.ticket(cur)
    r.snooze(cur, T0 + 24 * H, T0)  # snoozed while the send was in flight
    assert not r.record_send(ticket, T0 + timedelta(seconds=2), 7)
    assert (cur.status, cur.reminder_count, cur.message_id) == (StepStatus.PENDING, 0, 7)

    ticket = r.ticket(cur)
    r.replace(STEPS[:5], T0, await_approval=False)  # replaced while in flight
    assert not r.record_send(ticket, T0, 8)
    new = r.state.current
    assert new is not None and (new.status, new.message_id) == (StepStatus.PENDING, None)

    ticket = r.ticket(new)
    r.resolve(new, StepStatus.COMPLETED, T0)  # answered while in flight: still counted
    assert not r.record_send(ticket, T0, 9)
    assert (new.status, new.reminder_count, new.message_id) == (StepStatus.COMPLETED, 1, 9)


def test_block_only_stops_a_running_plan_and_keeps_a_vacation() -> None:
    r = started()
    until = T0 + 240 * H
    r.pause(T0, until)
    assert not r.block("bot blocked")
    assert (r.state.status, r.state.paused_until) == (PlanStatus.PAUSED, until)
    r.resume(T0 + H)
    assert r.block("bot blocked") and r.state.status == PlanStatus.BLOCKED


def test_refusals_are_typed() -> None:
    r = rules()
    assert refusal(r.check_answer, StepAction(step_id=1, plan_version=1), False) == (
        Rejection.NOT_STARTED
    )
    r.activate(T0)
    assert refusal(r.check_answer, StepAction(step_id=2, plan_version=1), False) == (
        Rejection.NOT_DUE
    )
    assert refusal(r.check_answer, StepAction(step_id=1, plan_version=0), False) == (
        Rejection.ALREADY_HANDLED
    )
    assert refusal(r.check_approve, 1, False) == Rejection.ALREADY_HANDLED
    assert refusal(r.check_resume, False) == Rejection.WRONG_STATUS
    assert refusal(r.check_pause, T0 - H, T0, False) == Rejection.INVALID
    assert refusal(r.check_answer, StepAction(step_id=1, plan_version=1), True) == (
        Rejection.PLAN_FINISHED
    )
    r.state.drafting = True
    assert refusal(r.check_replace, False) == Rejection.BUSY


def test_approve_says_why_there_is_nothing_to_start() -> None:
    """Drafting: busy. A failed draft: it failed (Regenerate), not "being drafted". A stale
    button: already handled, whatever the draft's state."""
    r = rules()
    r.state.steps = []
    r.state.drafting = True
    assert refusal(r.check_approve, None, False) == Rejection.BUSY
    assert refusal(r.check_approve, 0, False) == Rejection.ALREADY_HANDLED
    r.state.drafting, r.state.last_error = False, "the planner refused"
    assert refusal(r.check_approve, 1, False) == Rejection.DRAFT_FAILED
    assert refusal(r.check_approve, 0, False) == Rejection.ALREADY_HANDLED
