"""One lead's engagement plan as a durable Temporal workflow.

(Longer than our ~500-line norm on purpose: the loop, the handlers and their side effects
share one instance's private state and read best side by side; every decision they take
lives in the pure `plan_rules.py`, and the released behaviour kept for replay is marked
`_legacy`.)

The workflow is an event loop over one question: "when is the next thing due, and
what is it?". Owner actions (updates) and the cancel signal change the state and
poke the loop; the loop sleeps until the next due moment, which costs one timer.
A reminder on the hot path is one timer task, one activity (send + mirror), one
completion task.

Concurrency design (why no owner action can leave a plan stuck, resurrected or doubled):

1. **Handlers change state synchronously.** Every update handler validates and applies
   its whole state change through `PlanRules` before its first `await`; what it awaits
   afterwards is only I/O (the mirror write, a notice) whose result it does not act on.
   The state is never half-made when another handler or the loop runs.
2. **Long work is the loop's, not a handler's.** Drafting a plan (Regenerate) sets
   `drafting` and returns at once; the loop runs the planner as an activity beside its
   timers and applies the draft only if the plan is still open when it arrives.
3. **Results are checked against what they were for.** A send carries a `SendTicket`
   (plan version, step, round, count); its result is recorded against the ticket, never
   against "the current step", so a snooze, answer or replacement during the send is
   never undone. A write that an action overtook is healed by one more mirror write.
4. **The loop is total.** `PlanRules.next_wake` and `due` answer for every state a
   handler can produce; workflow code has no `assert`, bare `next()` or index that an
   interleaving can break. A workflow task that raises would retry forever.
5. **Every way to stop is one path.** The `cancel` signal, a closed lead found by the
   send, a lead closed before the draft, and a Temporal cancellation (UI, CLI) all end in
   `_finish_cancel`: rows cancelled, logged, a summary returned. A cancel that arrives
   while the loop waits to continue-as-new is carried into the next run.

Versioning: histories recorded from released code live in tests/histories/ and must
replay. A change of the command sequence goes behind `workflow.patched`: see
`PATCH_SPACED_NUDGES` (it also keeps the released in-place drafting,
`_legacy_draft`/`_legacy_replace`, for plans begun before it),
`PATCH_NOTICE_AFTER_ANSWER` and `PATCH_ONE_MIRROR_PER_REPLACE`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

# Pure, deterministic modules: shared with the sandbox instead of re-imported for
# every workflow run, which keeps a plan's first task cheap.
with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa
    from workflows.errors import Rejection, rejected
    from workflows.models import (
        SEND_PRIORITY,
        ApproveRequest,
        CancelRequest,
        GeneratePlanRequest,
        LogEntry,
        MirrorRequest,
        NoticeKind,
        NoticeRequest,
        NotSentReason,
        PauseRequest,
        PlanInput,
        PlanState,
        PlanStatus,
        PlanStep,
        PlanSummary,
        ReminderKind,
        ReminderRequest,
        ReminderResult,
        ReplacePlanRequest,
        Schedule,
        SnoozeAction,
        StepAction,
        StepState,
        StepStatus,
        check_steps,
    )
    from workflows.plan_rules import DueKind, PlanRules, SendTicket
    from workflows.timing import describe_delay

ENGAGEMENT_TASK_QUEUE = "engagement"
# Telegram sends have their own queue so its server-side rate limit covers only them.
TELEGRAM_TASK_QUEUE = "telegram"

# Sends retry until they succeed (a reminder is never lost); only a non-retryable
# error such as "bot blocked" comes back to the workflow.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["BotBlocked", "BadRequest"],
)
# The Bot's HTTP timeout to Telegram is shorter than this, and the send heartbeats, so
# a second attempt never starts while the first may still be talking to Telegram.
SEND_TIMEOUT = timedelta(seconds=30)
SEND_HEARTBEAT = timedelta(seconds=10)
MIRROR_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
MIRROR_TIMEOUT = timedelta(seconds=15)
MIRROR_LOCAL_RETRY_THRESHOLD = timedelta(seconds=2)
# The planner activity keeps its own 60-s deadline across attempts (25-s requests) and
# says when it is spent; these are the backstops around it.
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_attempts=10,
    non_retryable_error_types=["PlanRejected", "LeadNotFound", "LeadClosed"],
)
GENERATE_TIMEOUT = timedelta(seconds=30)
GENERATE_DEADLINE = timedelta(seconds=75)
# A send that keeps finding its step closed in the mirror waits this long before retrying.
REFUSED_BACKOFF = timedelta(minutes=10)

# Nudges count their gap from the previous reminder actually sent (never a burst after
# an outage or a block). Plans recorded before keep the round-start clock on replay.
# The same release moved drafting into the loop (Regenerate returns at once); plans
# begun before it (no marker) keep drafting in `_start` and the replace_plan handler.
# Both changes shipped together, so this one marker tells the two kinds of run apart.
PATCH_SPACED_NUDGES = "spaced-nudges"
# The answer that completes a plan returns once the rows are written; the run sends the
# "plan completed" notice afterwards. Released before, the handler awaited the notice, so
# a Done tap waited for the telegram queue's rate limit and the chat's spacing.
PATCH_NOTICE_AFTER_ANSWER = "completion-notice-after-answer"
# Replacing the steps writes the rows once, both log lines with it (as a drafted
# replacement always did); released before, it wrote them twice, the first write already
# holding the new plan.
PATCH_ONE_MIRROR_PER_REPLACE = "one-mirror-per-replace"


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _error_message(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    return cause.message if isinstance(cause, ApplicationError) else str(err)


@workflow.defn
class EngagementPlanWorkflow:
    @workflow.init
    def __init__(self, inp: PlanInput) -> None:
        self._input = inp
        if inp.carried_state is not None:
            self._state = inp.carried_state
        else:
            self._state = PlanState(
                lead_id=inp.lead_id,
                telegram_id=inp.telegram_id,
                plan_version=inp.plan_version,
                schedule=inp.schedule,
            )
            if inp.steps:  # validated by PlanInput
                self._state.steps = [StepState.from_step(s) for s in inp.steps]
        # Decided on the first task (see run); until then the new clock.
        self._rules = PlanRules(self._state, inp.escalation, inp.day_seconds, spaced=True)
        self._poked = False
        self._cancel: CancelRequest | None = None
        self._draft: asyncio.Task[list[PlanStep]] | None = None
        # Decided on the first task (see run): a run begun before the race-free release.
        self._legacy = False
        self._refused: SendTicket | None = None
        self._remirror = False
        # Set by the answer that completed the plan (PATCH_NOTICE_AFTER_ANSWER).
        self._completion_notice = False
        self._visible: tuple[PlanStatus, datetime | None] | None = None

    def _poke(self) -> None:
        self._poked = True

    # ---------------------------------------------------------------- run loop

    @workflow.run
    async def run(self, inp: PlanInput) -> PlanSummary:
        released_with_race_free_handlers = workflow.patched(PATCH_SPACED_NUDGES)
        self._rules.spaced = released_with_race_free_handlers
        self._legacy = not released_with_race_free_handlers
        try:
            await self._loop(inp)
        except asyncio.CancelledError:
            # "Request Cancellation" in the UI or `temporal workflow cancel`: the same as
            # the cancel signal, so rows are closed, it is logged and a summary returned.
            if self._legacy:
                raise  # released before: such runs ended as cancelled executions
            if self._cancel is None:
                self._cancel = CancelRequest(reason="cancelled in Temporal by an operator")
        if self._cancel is not None and self._rules.is_open:
            await self._finish_cancel(self._cancel)
        self._show(None)
        if self._completion_notice:
            with contextlib.suppress(asyncio.CancelledError):  # done already: nothing to stop
                await self._notify_plan_completed()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._summary()

    async def _loop(self, inp: PlanInput) -> None:
        st = self._state
        if inp.carried_state is None:
            await self._start(inp)
        while self._rules.is_open and self._cancel is None:
            if self._draft is not None and self._draft.done():
                await self._take_draft(self._draft)
                continue
            if self._remirror:
                self._remirror = False
                await self._mirror()
                continue
            if st.drafting and self._draft is None and not self._legacy:
                self._start_draft()
            if self._history_is_long() and self._draft is None:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._cancel is not None or not self._rules.is_open:
                    break  # a cancel that came in while handlers finished is not lost
                workflow.continue_as_new(inp.model_copy(update={"carried_state": st}))
            wake_at = self._rules.next_wake()
            self._show(wake_at)
            self._poked = False
            if wake_at is None:
                await workflow.wait_condition(lambda: self._poked)
                continue
            delay = (wake_at - self._send_lead(wake_at) - workflow.now()).total_seconds()
            if delay > 0:
                try:
                    await workflow.wait_condition(
                        lambda: self._poked,
                        timeout=delay,
                        timeout_summary=self._timer_summary(wake_at),
                    )
                    continue  # something changed: recompute what is due
                except TimeoutError:
                    pass
            await self._on_due(wake_at)

    def _send_lead(self, wake_at: datetime) -> timedelta:
        """How much earlier than `wake_at` to wake: the send's lead when a reminder is due
        then (it waits inside the activity until `wake_at`), else none."""
        lead = self._input.send_lead_seconds
        due = self._rules.due(wake_at) if lead > 0 else None
        if due is None or not due.is_send:
            return timedelta(0)
        return timedelta(seconds=lead)

    async def _start(self, inp: PlanInput) -> None:
        st = self._state
        if not st.steps:
            if not self._legacy:
                st.drafting = True
                self._start_draft()
                return  # the loop takes the draft when it arrives
            steps = await self._legacy_draft()
            st.steps = [StepState.from_step(s) for s in steps or []]
        logs = [self._log("plan_created", f"plan v{st.plan_version} with {len(st.steps)} steps")]
        if inp.approved:
            self._rules.activate(workflow.now())
            logs.append(self._log("plan_approved", "plan started"))
        await self._mirror(*logs)
        if st.status == PlanStatus.AWAITING_APPROVAL:
            await self._notify_plan_ready()

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._input.history_event_limit
        )

    async def _on_due(self, wake_at: datetime) -> None:
        """Act on what is due at `wake_at`: now, or a reminder's due time a send lead
        ahead (`_send_lead`), which the send itself then waits for."""
        now = workflow.now()
        at = max(now, wake_at)
        due = self._rules.due(at)
        if due is None:
            return  # an owner action moved the goalposts while the timer fired
        if at > now and not due.is_send:
            return  # only a send starts early; the loop waits for the rest
        st = self._state
        if due.kind == DueKind.RESUME:
            self._rules.resume(now)
            await self._mirror(self._log("plan_resumed", "pause ended"))
            return
        step = st.current
        if step is None:
            return
        if due.kind == DueKind.AUTO_SNOOZE:
            await self._auto_snooze(step, now)
        else:
            kind = ReminderKind.FIRST if due.kind == DueKind.FIRST else ReminderKind.NUDGE
            await self._send_reminder(step, kind, at if at > now else None)

    # ---------------------------------------------------------------- reminders

    async def _send_reminder(
        self, step: StepState, kind: ReminderKind, not_before: datetime | None = None
    ) -> None:
        st = self._state
        ticket = self._rules.ticket(step)
        st.revision += 1
        sent_revision = st.revision
        # The plan as it will be once sent: the activity mirrors all of it, so every
        # write, the hot path's included, leaves the rows equal to the workflow's state.
        snapshot = st.model_copy(deep=True)
        PlanRules(snapshot, self._input.escalation, self._input.day_seconds, True).record_send(
            ticket, not_before or workflow.now(), step.message_id
        )
        req = ReminderRequest(
            state=snapshot,
            step_id=step.step_id,
            kind=kind,
            delivery_key=(
                f"lead-{st.lead_id}:v{st.plan_version}:s{step.step_id}"
                f":r{step.snooze_count}:n{ticket.reminder_count + 1}"
            ),
            not_before=not_before,
        )
        try:
            result = await workflow.execute_activity(
                "send_reminder",
                req,
                result_type=ReminderResult,
                task_queue=TELEGRAM_TASK_QUEUE,
                start_to_close_timeout=SEND_TIMEOUT,
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=SEND_RETRY,
                priority=Priority(priority_key=SEND_PRIORITY.get(kind)),
                summary=f"remind step {st.position(step.step_id)} of {len(st.steps)} ({kind.value})",
            )
        except ActivityError as err:
            await self._block(ticket, err)
            return
        # Re-read: owner actions may have run while the send was in flight.
        if result.not_sent == NotSentReason.LEAD_CLOSED:
            if self._cancel is None:
                self._cancel = CancelRequest(reason="lead closed")
            return
        if result.not_sent is not None or result.sent_at is None:
            if st.revision != sent_revision or self._rules.ticket(step) != ticket:
                return  # answered, snoozed or replaced meanwhile: the loop decides again
            # The rows say the step is closed, or hold a newer revision, while the plan
            # knows of no change: heal them from the state (the workflow is the source of
            # truth), written past their revision, and try again; if the rows keep
            # disagreeing, back off instead of spinning.
            if self._refused == ticket:
                await workflow.sleep(REFUSED_BACKOFF, summary="send refused twice; retry later")
            self._refused = ticket
            st.revision = max(st.revision, result.rows_revision or 0)
            await self._mirror()
            return
        self._refused = None
        self._rules.record_send(ticket, result.sent_at, result.message_id)
        if st.revision != sent_revision:
            # An action overtook the send, so its mirror write (older revision) was dropped.
            await self._mirror()

    async def _block(self, ticket: SendTicket, err: ActivityError) -> None:
        st = self._state
        reason = _error_message(err)
        if ticket.plan_version != st.plan_version or not self._rules.block(reason):
            workflow.logger.warning("reminder for lead %s not delivered: %s", st.lead_id, reason)
            return
        await self._mirror(
            self._log(
                "plan_blocked",
                f"reminder for step {st.position(ticket.step_id)} could not be delivered: {reason}",
                error_type=_error_type(err),
            )
        )

    async def _auto_snooze(self, step: StepState, now: datetime) -> None:
        st = self._state
        policy = self._input.escalation
        unanswered = step.reminder_count
        self._rules.snooze(step, self._rules.add_days(now, policy.auto_snooze_days), now)
        await self._mirror(
            self._log(
                "step_auto_snoozed",
                f"step {st.position(step.step_id)}: {unanswered} reminders unanswered, "
                f"snoozed {policy.auto_snooze_days} days",
                step_id=step.step_id,
            )
        )
        await self._notify(
            NoticeKind.AUTO_SNOOZED,
            f"auto-snooze-v{st.plan_version}-s{step.step_id}-r{step.snooze_count}",
            unanswered=unanswered,
            snooze_days=policy.auto_snooze_days,
        )

    # ---------------------------------------------------------------- drafts

    def _start_draft(self) -> None:
        """Run the planner beside the loop's timers; the loop takes the result when done."""
        st = self._state
        self._draft = workflow.start_activity(
            "generate_plan",
            GeneratePlanRequest(
                lead_id=st.lead_id,
                telegram_id=st.telegram_id,
                draft_number=st.plan_version + (1 if st.steps else 0),
            ),
            result_type=list[PlanStep],
            start_to_close_timeout=GENERATE_TIMEOUT,
            schedule_to_close_timeout=GENERATE_DEADLINE,
            retry_policy=GENERATE_RETRY,
            summary="draft the engagement plan",
        )
        self._draft.add_done_callback(lambda _: self._poke())

    async def _take_draft(self, draft: asyncio.Task[list[PlanStep]]) -> None:
        st = self._state
        self._draft = None
        st.drafting = False
        try:
            steps = draft.result()
        except (ActivityError, asyncio.CancelledError) as err:
            if isinstance(err, ActivityError) and _error_type(err) == "LeadClosed":
                if self._cancel is None:
                    self._cancel = CancelRequest(reason="lead closed")
                return
            st.last_error = _error_message(err)
            await self._mirror(self._log("plan_failed", st.last_error))
            await self._notify(NoticeKind.PLAN_FAILED, f"plan-failed-v{st.plan_version}")
            return
        if not self._rules.is_open or self._cancel is not None:
            return  # stopped while drafting: the draft is dropped
        st.last_error = None
        if not st.steps:
            st.steps = [StepState.from_step(s) for s in steps]
            await self._mirror(
                self._log("plan_created", f"plan v{st.plan_version} with {len(st.steps)} steps")
            )
        else:
            old = st.plan_version
            self._rules.replace(steps, workflow.now(), await_approval=True)
            await self._mirror(
                self._log("plan_replaced", f"plan v{old} replaced"),
                self._log("plan_created", f"plan v{st.plan_version} drafted"),
            )
        await self._notify_plan_ready()

    async def _legacy_draft(self) -> list[PlanStep] | None:
        """The released draft, awaited in place: replays plans begun before PATCH_SPACED_NUDGES.

        `drafting` keeps other replacements out meanwhile (they are refused as Busy).
        """
        st = self._state
        st.drafting = True
        try:
            steps = await workflow.execute_activity(
                "generate_plan",
                GeneratePlanRequest(lead_id=st.lead_id, telegram_id=st.telegram_id),
                result_type=list[PlanStep],
                start_to_close_timeout=GENERATE_TIMEOUT,
                schedule_to_close_timeout=GENERATE_DEADLINE,
                retry_policy=GENERATE_RETRY,
                summary="draft the engagement plan",
            )
        except ActivityError as err:
            if _error_type(err) == "LeadClosed" and self._cancel is None:
                self._cancel = CancelRequest(reason="lead closed")
            st.last_error = _error_message(err)
            await self._notify(NoticeKind.PLAN_FAILED, f"plan-failed-v{st.plan_version}")
            return None
        finally:
            st.drafting = False
        st.last_error = None
        return steps

    async def _legacy_replace(self, req: ReplacePlanRequest) -> PlanState:
        """The released order (drafted in place, "replaced" logged, then the new version):
        replays plans begun before PATCH_SPACED_NUDGES, whose loop interleaves with it.

        After each await the plan is checked again, so a cancel meanwhile still wins.
        """
        st = self._state
        steps = req.steps
        if steps is None:
            steps = await self._legacy_draft()
            if steps is None:
                raise rejected(
                    Rejection.DRAFT_FAILED, f"could not draft a new plan: {st.last_error}"
                )
            self._rules.check_open(self._cancelling)
        await self._mirror(self._log("plan_replaced", f"plan v{st.plan_version} replaced"))
        self._rules.check_open(self._cancelling)
        self._rules.replace(steps, workflow.now(), await_approval=False)
        awaiting = st.status == PlanStatus.AWAITING_APPROVAL
        verb = "drafted" if awaiting else "started"
        await self._mirror(self._log("plan_created", f"plan v{st.plan_version} {verb}"))
        if awaiting:
            await self._notify_plan_ready()
        return st

    # ---------------------------------------------------------------- side effects

    def _log(self, activity_type: str, content: str, **metadata: str | int | None) -> LogEntry:
        st = self._state
        return LogEntry(
            activity_type=activity_type,
            content=content,
            metadata={"plan_version": st.plan_version, **metadata},
            dedupe_key=f"lead-{st.lead_id}:v{st.plan_version}:rev{st.revision + 1}:{activity_type}",
        )

    async def _mirror(self, *logs: LogEntry) -> None:
        """Write the plan's rows and log lines; the revision lets the newest write win."""
        st = self._state
        st.revision += 1
        self._poke()  # the state changed: the run loop recomputes what is due
        await workflow.execute_local_activity(
            "sync_plan",
            MirrorRequest(state=st.model_copy(deep=True), log=list(logs)),
            start_to_close_timeout=MIRROR_TIMEOUT,
            retry_policy=MIRROR_RETRY,
            # Past this, retries wait on a workflow timer instead of inside the task, so a
            # database outage never holds queries and updates for long.
            local_retry_threshold=MIRROR_LOCAL_RETRY_THRESHOLD,
            summary="mirror plan to PostgreSQL",
        )

    async def _notify(
        self, kind: NoticeKind, key: str, unanswered: int = 0, snooze_days: int = 0
    ) -> None:
        st = self._state
        try:
            await workflow.execute_activity(
                "send_notice",
                NoticeRequest(
                    state=st.model_copy(deep=True),
                    kind=kind,
                    delivery_key=f"lead-{st.lead_id}:{key}",
                    unanswered=unanswered,
                    snooze_days=snooze_days,
                ),
                task_queue=TELEGRAM_TASK_QUEUE,
                start_to_close_timeout=SEND_TIMEOUT,
                heartbeat_timeout=SEND_HEARTBEAT,
                retry_policy=SEND_RETRY,
                priority=Priority(priority_key=SEND_PRIORITY.get(kind)),
                summary=f"tell the owner: {kind.value}",
            )
        except ActivityError:
            # A notice is informative; a blocked bot shows up on the next reminder.
            workflow.logger.warning("notice %s for lead %s not delivered", kind, st.lead_id)

    async def _notify_plan_ready(self) -> None:
        st = self._state
        if st.steps and st.status == PlanStatus.AWAITING_APPROVAL:
            await self._notify(NoticeKind.PLAN_READY, f"plan-ready-v{st.plan_version}")

    async def _notify_plan_completed(self) -> None:
        await self._notify(NoticeKind.PLAN_COMPLETED, f"plan-completed-v{self._state.plan_version}")

    async def _finish_cancel(self, req: CancelRequest) -> None:
        if self._draft is not None and not self._draft.done():
            self._draft.cancel()
        self._rules.cancel(req.reason)
        await self._mirror(self._log("plan_cancelled", req.reason))

    def _show(self, wake_at: datetime | None) -> None:
        """Keep search attributes and the UI's current details in step with the state."""
        st = self._state
        visible = (st.status, wake_at if st.status == PlanStatus.ACTIVE else None)
        st.next_due_at = visible[1]
        if visible != self._visible:
            self._visible = visible
            workflow.upsert_search_attributes(
                [
                    sa.PLAN_STATUS.value_set(st.status.value),
                    sa.NEXT_DUE_AT.value_set(visible[1])
                    if visible[1] is not None
                    else sa.NEXT_DUE_AT.value_unset(),
                ]
            )
        workflow.set_current_details(self._details(wake_at))

    def _details(self, wake_at: datetime | None) -> str:
        st = self._state
        cur = st.current
        where = f"step {st.position(cur.step_id)} of {len(st.steps)}" if cur else "no step"
        tz = st.schedule.timezone
        when = ""
        if wake_at is not None:
            from zoneinfo import ZoneInfo

            when = wake_at.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M") + f" ({tz})"
        drafting = "; drafting a new plan" if st.drafting and st.steps else ""
        match st.status:
            case PlanStatus.AWAITING_APPROVAL:
                if st.drafting:
                    return "Drafting the plan"
                if not st.steps:
                    return f"Plan generation failed ({st.last_error}); waiting for regenerate or cancel"
                return f"Waiting for the owner to approve plan v{st.plan_version} ({len(st.steps)} steps)"
            case PlanStatus.PAUSED:
                return (
                    f"Paused at {where}"
                    + (f"; resumes {when}" if when else " until resumed")
                    + drafting
                )
            case PlanStatus.BLOCKED:
                return f"Blocked at {where}: {st.blocked_reason}; waiting for resume" + drafting
            case PlanStatus.ACTIVE if cur is not None and wake_at is not None:
                if cur.status == StepStatus.PENDING:
                    return f"Waiting to remind {where} ({cur.action_type}) at {when}" + drafting
                if cur.reminder_count < len(self._rules.offsets()):
                    return (
                        f"Waiting for the owner's answer to {where}; "
                        f"nudge {cur.reminder_count + 1} at {when}" + drafting
                    )
                return (
                    f"Waiting for the owner's answer to {where}; auto-snooze at {when}" + drafting
                )
            case _:
                return f"Plan {st.status.value}" + drafting

    def _timer_summary(self, wake_at: datetime) -> str:
        st = self._state
        span = describe_delay(wake_at - workflow.now(), self._input.day_seconds)
        if st.status == PlanStatus.PAUSED:
            return f"paused, resume in {span}"
        cur = st.current
        if cur is None:
            return f"wait {span}"
        pos = st.position(cur.step_id)
        if cur.status == StepStatus.PENDING:
            return f"wait {span} until step {pos}"
        if cur.reminder_count < len(self._rules.offsets()):
            return f"wait {span}, then nudge {cur.reminder_count + 1} for step {pos}"
        return f"wait {span}, then auto-snooze step {pos}"

    def _summary(self) -> PlanSummary:
        st = self._state
        count = lambda s: sum(1 for step in st.steps if step.status == s)  # noqa: E731
        return PlanSummary(
            lead_id=st.lead_id,
            status=st.status,
            completed=count(StepStatus.COMPLETED),
            skipped=count(StepStatus.SKIPPED),
            cancelled=count(StepStatus.CANCELLED),
            reason=st.cancel_reason,
        )

    # ---------------------------------------------------------------- owner API

    @workflow.query
    def state(self) -> PlanState:
        return self._state

    @workflow.signal
    def cancel(self, req: CancelRequest | None = None) -> None:
        """Idempotent: the first cancel wins, later ones and cancels of a finished plan are no-ops."""
        if self._cancel is None and self._rules.is_open:
            self._cancel = req or CancelRequest(reason="cancelled by operator")
            self._poke()

    @workflow.signal
    def remirror(self) -> None:
        """Write the whole plan to the rows again: `leadpilot doctor --repair` heals drift."""
        if self._rules.is_open:
            self._remirror = True
            self._poke()

    @property
    def _cancelling(self) -> bool:
        return self._cancel is not None

    @workflow.update
    async def complete_step(self, action: StepAction) -> PlanState:
        return await self._answer(action, StepStatus.COMPLETED, "step_completed")

    @complete_step.validator
    def _validate_complete(self, action: StepAction) -> None:
        self._rules.check_answer(action, self._cancelling)

    @workflow.update
    async def skip_step(self, action: StepAction) -> PlanState:
        return await self._answer(action, StepStatus.SKIPPED, "step_skipped")

    @skip_step.validator
    def _validate_skip(self, action: StepAction) -> None:
        self._rules.check_answer(action, self._cancelling)

    async def _answer(self, action: StepAction, status: StepStatus, log_type: str) -> PlanState:
        st = self._state
        step = self._rules.check_answer(action, self._cancelling)
        pos = st.position(step.step_id)
        self._rules.resolve(step, status, workflow.now())
        logs = [self._log(log_type, f"step {pos} {status.value}", step_id=step.step_id)]
        completed = st.status == PlanStatus.COMPLETED
        # The run sends the "plan completed" notice: the tap that finished the plan is
        # answered once the rows say so, not after a rate-limited message to Telegram.
        notice_in_handler = completed and not workflow.patched(PATCH_NOTICE_AFTER_ANSWER)
        self._completion_notice = completed and not notice_in_handler
        if completed:
            logs.append(self._log("plan_completed", "all steps resolved"))
        await self._mirror(*logs)
        if notice_in_handler:
            await self._notify_plan_completed()
        return st

    @workflow.update
    async def snooze_step(self, action: SnoozeAction) -> PlanState:
        st = self._state
        step = self._rules.check_answer(action, self._cancelling)
        now = workflow.now()
        self._rules.snooze(step, self._rules.add_days(now, action.days), now)
        await self._mirror(
            self._log(
                "step_snoozed",
                f"step {st.position(step.step_id)} snoozed {action.days} days",
                step_id=step.step_id,
            )
        )
        return st

    @snooze_step.validator
    def _validate_snooze(self, action: SnoozeAction) -> None:
        self._rules.check_answer(action, self._cancelling)

    @workflow.update
    async def pause(self, req: PauseRequest) -> PlanState:
        now = workflow.now()
        self._rules.check_pause(req.until, now, self._cancelling)
        self._rules.pause(now, req.until)
        until = req.until.isoformat() if req.until else "resumed"
        await self._mirror(self._log("plan_paused", f"paused until {until}"))
        return self._state

    @pause.validator
    def _validate_pause(self, req: PauseRequest) -> None:
        self._rules.check_pause(req.until, workflow.now(), self._cancelling)

    @workflow.update
    async def resume(self) -> PlanState:
        self._rules.check_resume(self._cancelling)
        self._rules.resume(workflow.now())
        await self._mirror(self._log("plan_resumed", "resumed by owner"))
        return self._state

    @resume.validator
    def _validate_resume(self) -> None:
        self._rules.check_resume(self._cancelling)

    @workflow.update
    async def approve(self, req: ApproveRequest | None = None) -> PlanState:
        version = req.plan_version if req else None
        self._rules.check_approve(version, self._cancelling)
        self._rules.activate(workflow.now())
        await self._mirror(self._log("plan_approved", f"plan v{self._state.plan_version} started"))
        return self._state

    @approve.validator
    def _validate_approve(self, req: ApproveRequest | None = None) -> None:
        self._rules.check_approve(req.plan_version if req else None, self._cancelling)

    @workflow.update
    async def replace_plan(self, req: ReplacePlanRequest) -> PlanState:
        """New steps become a new plan version at once; no steps: a fresh draft is made.

        A draft runs in the loop, beside the running plan, and arrives as a plan-ready
        notice for the owner's approval; this update returns as soon as it is under way.
        """
        st = self._state
        self._validate_replace(req)
        if self._legacy:
            return await self._legacy_replace(req)
        if req.steps is None:
            st.drafting = True
            self._poke()
            await self._mirror(self._log("plan_regenerating", "drafting a new plan"))
            return st
        old = st.plan_version
        self._rules.replace(req.steps, workflow.now(), await_approval=False)
        awaiting = st.status == PlanStatus.AWAITING_APPROVAL
        verb = "drafted" if awaiting else "started"
        logs = [self._log("plan_replaced", f"plan v{old} replaced")]
        if not workflow.patched(PATCH_ONE_MIRROR_PER_REPLACE):
            await self._mirror(*logs)  # released: the rows written twice
            logs = []
        await self._mirror(*logs, self._log("plan_created", f"plan v{st.plan_version} {verb}"))
        if awaiting:
            await self._notify_plan_ready()
        return st

    @replace_plan.validator
    def _validate_replace(self, req: ReplacePlanRequest) -> None:
        self._rules.check_replace(self._cancelling)
        if req.steps is not None:
            try:
                check_steps(req.steps)
            except ValueError as err:
                raise rejected(Rejection.INVALID, str(err)) from None

    @workflow.update
    async def set_schedule(self, schedule: Schedule) -> PlanState:
        """A new timezone or window moves the pending due times of this running plan too."""
        self._rules.check_open(self._cancelling)
        self._rules.set_schedule(schedule)
        await self._mirror(self._log("schedule_changed", f"timezone {schedule.timezone}"))
        return self._state

    @set_schedule.validator
    def _validate_schedule(self, schedule: Schedule) -> None:
        self._rules.check_open(self._cancelling)


def initial_search_attributes(inp: PlanInput) -> TypedSearchAttributes:
    """What a plan shows in the Temporal UI from its first moment."""
    status = PlanStatus.ACTIVE if inp.approved and inp.steps else PlanStatus.AWAITING_APPROVAL
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.LEAD_ID, inp.lead_id),
            SearchAttributePair(sa.TELEGRAM_ID, inp.telegram_id),
            SearchAttributePair(sa.PLAN_STATUS, status.value),
        ]
    )
