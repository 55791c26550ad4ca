"""One lead's engagement plan as a durable Temporal workflow.

The workflow is an event loop over one question: "when is the next thing due, and
what is it?". Owner actions (updates) and the cancel signal change the state and
poke the loop; the loop sleeps until the next due moment, which costs one timer.
A reminder on the hot path is one timer task, one activity (send + mirror), one
completion task.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

# Pure, deterministic modules: shared with the sandbox instead of re-imported for
# every workflow run, which keeps a plan's first task cheap.
with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa
    from workflows.models import (
        TERMINAL_PLAN_STATUSES,
        CancelRequest,
        GeneratePlanRequest,
        LogEntry,
        MirrorRequest,
        NoticeKind,
        NoticeRequest,
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
    from workflows.timing import days, describe_delay, fit_to_window, hours

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
SEND_TIMEOUT = timedelta(seconds=30)
MIRROR_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
MIRROR_TIMEOUT = timedelta(seconds=15)
MIRROR_LOCAL_RETRY_THRESHOLD = timedelta(seconds=2)
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_attempts=5,
    non_retryable_error_types=["PlanRejected", "LeadNotFound"],
)
GENERATE_TIMEOUT = timedelta(seconds=120)


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _error_message(err: ActivityError) -> str:
    return err.cause.message if isinstance(err.cause, ApplicationError) else str(err)


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
        self._poked = False
        self._cancel: CancelRequest | None = None
        self._generating = False
        self._visible: tuple[PlanStatus, datetime | None] | None = None

    # ---------------------------------------------------------------- run loop

    @workflow.run
    async def run(self, inp: PlanInput) -> PlanSummary:
        st = self._state
        if inp.carried_state is None:
            await self._start(inp)
        while st.status not in TERMINAL_PLAN_STATUSES:
            if self._cancel is not None:
                await self._do_cancel(self._cancel)
                break
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"carried_state": st}))
            wake_at = self._next_wake()
            self._show(wake_at)
            self._poked = False
            if wake_at is None:
                await workflow.wait_condition(lambda: self._poked)
                continue
            delay = (wake_at - workflow.now()).total_seconds()
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
            await self._on_due()
        self._show(None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._summary()

    async def _start(self, inp: PlanInput) -> None:
        st = self._state
        if not st.steps:
            await self._generate()
        logs = [self._log("plan_created", f"plan v{st.plan_version} with {len(st.steps)} steps")]
        if inp.approved and st.steps:
            self._activate(workflow.now())
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

    def _next_wake(self) -> datetime | None:
        """The next moment the loop must act, or None to wait for the owner."""
        st = self._state
        if st.status == PlanStatus.PAUSED:
            return st.paused_until
        if st.status != PlanStatus.ACTIVE or (cur := st.current) is None:
            return None
        if cur.status == StepStatus.PENDING:
            return cur.due_at
        assert st.round_started_at is not None
        offsets = self._escalation_offsets()
        if cur.reminder_count < len(offsets):
            return self._fit(st.round_started_at + offsets[cur.reminder_count])
        policy = self._input.escalation
        give_up = offsets[-1] + hours(policy.auto_snooze_after_hours, self._input.day_seconds)
        return self._fit(st.round_started_at + give_up)

    def _escalation_offsets(self) -> list[timedelta]:
        """When each reminder of a round goes out, counted from the round's first one."""
        policy = self._input.escalation
        nudges = [hours(h, self._input.day_seconds) for h in policy.nudge_after_hours]
        return [timedelta(0), *nudges][: policy.max_reminders]

    async def _on_due(self) -> None:
        st = self._state
        now = workflow.now()
        wake = self._next_wake()
        if wake is None or wake > now:
            return  # an owner action moved the goalposts while the timer fired
        if st.status == PlanStatus.PAUSED:
            self._resume(now)
            await self._mirror(self._log("plan_resumed", "pause ended"))
            return
        cur = st.current
        assert cur is not None
        if cur.status == StepStatus.PENDING:
            await self._send_reminder(cur, ReminderKind.FIRST)
        elif cur.reminder_count < len(self._escalation_offsets()):
            await self._send_reminder(cur, ReminderKind.NUDGE)
        else:
            await self._auto_snooze(cur, now)

    # ---------------------------------------------------------------- reminders

    async def _send_reminder(self, step: StepState, kind: ReminderKind) -> None:
        st = self._state
        st.revision += 1
        # The plan as it will be once sent: the activity mirrors all of it, so every
        # write, the hot path's included, leaves the rows equal to the workflow's state.
        snapshot = st.model_copy(deep=True)
        sent = snapshot.step(step.step_id)
        assert sent is not None
        sent.status = StepStatus.SENT
        sent.reminder_count += 1
        sent.last_reminded_at = workflow.now()
        position = st.position(step.step_id)
        req = ReminderRequest(
            state=snapshot,
            step_id=step.step_id,
            kind=kind,
            delivery_key=(
                f"lead-{st.lead_id}:v{st.plan_version}:s{step.step_id}"
                f":r{step.snooze_count}:n{sent.reminder_count}"
            ),
        )
        try:
            result = await workflow.execute_activity(
                "send_reminder",
                req,
                result_type=ReminderResult,
                task_queue=TELEGRAM_TASK_QUEUE,
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                summary=f"remind step {position} of {len(st.steps)} ({kind.value})",
            )
        except ActivityError as err:
            await self._block(step, err)
            return
        cur = st.current
        # An owner action may have resolved or snoozed the step while we were sending.
        if (
            cur is None
            or cur.step_id != step.step_id
            or not cur.is_open
            or cur.snooze_count != step.snooze_count
            or cur.reminder_count != step.reminder_count
        ):
            return
        cur.status = StepStatus.SENT
        cur.reminder_count = sent.reminder_count
        cur.last_reminded_at = result.sent_at
        cur.message_id = result.message_id
        if kind == ReminderKind.FIRST:
            st.round_started_at = result.sent_at

    async def _block(self, step: StepState, err: ActivityError) -> None:
        st = self._state
        reason = _error_message(err)
        if st.status in TERMINAL_PLAN_STATUSES:
            return
        st.status = PlanStatus.BLOCKED
        st.blocked_reason = reason
        await self._mirror(
            self._log(
                "plan_blocked",
                f"reminder for step {st.position(step.step_id)} could not be delivered: {reason}",
                error_type=_error_type(err),
            )
        )

    async def _auto_snooze(self, step: StepState, now: datetime) -> None:
        st = self._state
        policy = self._input.escalation
        unanswered = step.reminder_count
        self._snooze(step, self._add_days(now, policy.auto_snooze_days))
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

    # ---------------------------------------------------------------- transitions

    def _add_days(self, base: datetime, n: float) -> datetime:
        return base + days(n, self._input.day_seconds)

    def _fit(self, moment: datetime) -> datetime:
        return fit_to_window(moment, self._state.schedule, self._input.day_seconds)

    def _set_current(self, step: StepState, target: datetime) -> None:
        st = self._state
        st.current_step_id = step.step_id
        st.target_at = target
        st.round_started_at = None
        step.due_at = self._fit(target)
        self._project()

    def _project(self) -> None:
        """Projected due times of the steps after the current one, if all go on time."""
        st = self._state
        cur = st.current
        if cur is None or cur.due_at is None:
            return
        prev, prev_due = cur, cur.due_at
        for step in st.steps[st.position(cur.step_id) :]:
            prev_due = self._fit(self._add_days(prev_due, step.delay_days - prev.delay_days))
            step.due_at = prev_due
            prev = step

    def _activate(self, now: datetime) -> None:
        st = self._state
        st.status = PlanStatus.ACTIVE
        st.approved_at = now
        first = st.steps[0]
        self._set_current(first, self._add_days(now, first.delay_days))

    def _resolve(self, step: StepState, status: StepStatus, now: datetime) -> None:
        """Done or skipped: the next step counts its gap from now, so late answers never bunch."""
        st = self._state
        step.status = status
        step.completed_at = now  # when the step was closed, done or skipped
        idx = st.position(step.step_id)
        if idx == len(st.steps):
            st.current_step_id = None
            st.target_at = None
            st.status = PlanStatus.COMPLETED
            return
        nxt = st.steps[idx]
        if st.status == PlanStatus.PAUSED:
            st.paused_at = now
        self._set_current(nxt, self._add_days(now, nxt.delay_days - step.delay_days))

    def _snooze(self, step: StepState, until: datetime) -> None:
        step.status = StepStatus.PENDING
        step.snooze_count += 1
        step.reminder_count = 0
        self._set_current(step, until)

    def _pause(self, now: datetime, until: datetime | None) -> None:
        st = self._state
        if st.status != PlanStatus.PAUSED:
            wake = self._next_wake()
            st.remaining_seconds = None if wake is None else max(0.0, (wake - now).total_seconds())
            st.paused_at = now
        st.status = PlanStatus.PAUSED
        st.paused_until = until

    def _resume(self, now: datetime) -> None:
        """Continue with the delay that was left when the pause began."""
        st = self._state
        was_paused = st.status == PlanStatus.PAUSED
        st.status = PlanStatus.ACTIVE
        st.blocked_reason = None
        if was_paused and st.paused_at is not None:
            shift = now - st.paused_at
            cur = st.current
            if cur is not None and cur.status == StepStatus.PENDING and st.target_at is not None:
                self._set_current(cur, st.target_at + shift)
            elif st.round_started_at is not None:
                st.round_started_at += shift
        st.paused_at = None
        st.paused_until = None
        st.remaining_seconds = None

    async def _do_cancel(self, req: CancelRequest) -> None:
        st = self._state
        for step in st.steps:
            if step.is_open:
                step.status = StepStatus.CANCELLED
        st.status = PlanStatus.CANCELLED
        st.cancel_reason = req.reason
        st.current_step_id = None
        await self._mirror(self._log("plan_cancelled", req.reason))

    async def _generate(self) -> bool:
        """Draft a plan with the planner activity; on failure keep waiting for the owner."""
        st = self._state
        self._generating = True
        try:
            steps = await workflow.execute_activity(
                "generate_plan",
                GeneratePlanRequest(lead_id=st.lead_id, telegram_id=st.telegram_id),
                result_type=list[PlanStep],
                start_to_close_timeout=GENERATE_TIMEOUT,
                retry_policy=GENERATE_RETRY,
                summary="draft the engagement plan",
            )
        except ActivityError as err:
            st.last_error = _error_message(err)
            await self._notify(NoticeKind.PLAN_FAILED, f"plan-failed-v{st.plan_version}")
            return False
        finally:
            self._generating = False
        st.last_error = None
        st.steps = [StepState.from_step(s) for s in steps]
        return True

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
        self._poked = True  # the state changed: the run loop recomputes what is due
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
                retry_policy=SEND_RETRY,
                summary=f"tell the owner: {kind.value}",
            )
        except ActivityError:
            # A notice is informative; a blocked bot shows up on the next reminder.
            workflow.logger.warning("notice %s for lead %s not delivered", kind, st.lead_id)

    async def _notify_plan_ready(self) -> None:
        st = self._state
        if st.steps:
            await self._notify(NoticeKind.PLAN_READY, f"plan-ready-v{st.plan_version}")

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
        match st.status:
            case PlanStatus.AWAITING_APPROVAL:
                if self._generating:
                    return "Drafting the plan"
                if not st.steps:
                    return f"Plan generation failed ({st.last_error}); waiting for regenerate or cancel"
                return f"Waiting for the owner to approve plan v{st.plan_version} ({len(st.steps)} steps)"
            case PlanStatus.PAUSED:
                return f"Paused at {where}" + (f"; resumes {when}" if when else " until resumed")
            case PlanStatus.BLOCKED:
                return f"Blocked at {where}: {st.blocked_reason}; waiting for resume"
            case PlanStatus.ACTIVE if cur is not None:
                if cur.status == StepStatus.PENDING:
                    return f"Waiting to remind {where} ({cur.action_type}) at {when}"
                if cur.reminder_count < len(self._escalation_offsets()):
                    return (
                        f"Waiting for the owner's answer to {where}; "
                        f"nudge {cur.reminder_count + 1} at {when}"
                    )
                return f"Waiting for the owner's answer to {where}; auto-snooze at {when}"
            case _:
                return f"Plan {st.status.value}"

    def _timer_summary(self, wake_at: datetime) -> str:
        st = self._state
        span = describe_delay(wake_at - workflow.now(), self._input.day_seconds)
        if st.status == PlanStatus.PAUSED:
            return f"paused, resume in {span}"
        cur = st.current
        assert cur is not None
        pos = st.position(cur.step_id)
        if cur.status == StepStatus.PENDING:
            return f"wait {span} until step {pos}"
        if cur.reminder_count < len(self._escalation_offsets()):
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
        if self._cancel is None and self._state.status not in TERMINAL_PLAN_STATUSES:
            self._cancel = req or CancelRequest(reason="cancelled by operator")
            self._poked = True

    def _require_open(self) -> None:
        if self._cancel is not None or self._state.status in TERMINAL_PLAN_STATUSES:
            raise ValueError(
                f"plan already {self._state.status.value if self._cancel is None else 'cancelled'}"
            )

    def _require_current(self, action: StepAction) -> StepState:
        """Only the current step of the current plan version accepts an answer."""
        self._require_open()
        st = self._state
        if st.status == PlanStatus.AWAITING_APPROVAL:
            raise ValueError("plan not started yet")
        step = st.step(action.step_id)
        if action.plan_version != st.plan_version or step is None:
            raise ValueError("already handled: this plan was replaced")
        if not step.is_open:
            raise ValueError(
                f"already handled: step {st.position(step.step_id)} is {step.status.value}"
            )
        if step.step_id != st.current_step_id:
            raise ValueError(f"step {st.position(step.step_id)} is not due yet")
        return step

    @workflow.update
    async def complete_step(self, action: StepAction) -> PlanState:
        return await self._answer(action, StepStatus.COMPLETED, "step_completed")

    @complete_step.validator
    def _validate_complete(self, action: StepAction) -> None:
        self._require_current(action)

    @workflow.update
    async def skip_step(self, action: StepAction) -> PlanState:
        return await self._answer(action, StepStatus.SKIPPED, "step_skipped")

    @skip_step.validator
    def _validate_skip(self, action: StepAction) -> None:
        self._require_current(action)

    async def _answer(self, action: StepAction, status: StepStatus, log_type: str) -> PlanState:
        st = self._state
        step = self._require_current(action)
        pos = st.position(step.step_id)
        self._resolve(step, status, workflow.now())
        logs = [self._log(log_type, f"step {pos} {status.value}", step_id=step.step_id)]
        if st.status == PlanStatus.COMPLETED:
            logs.append(self._log("plan_completed", "all steps resolved"))
        await self._mirror(*logs)
        if st.status == PlanStatus.COMPLETED:
            await self._notify(NoticeKind.PLAN_COMPLETED, f"plan-completed-v{st.plan_version}")
        return st

    @workflow.update
    async def snooze_step(self, action: SnoozeAction) -> PlanState:
        st = self._state
        step = self._require_current(action)
        self._snooze(step, self._add_days(workflow.now(), action.days))
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
        self._require_current(action)

    @workflow.update
    async def pause(self, req: PauseRequest) -> PlanState:
        self._pause(workflow.now(), req.until)
        until = req.until.isoformat() if req.until else "resumed"
        await self._mirror(self._log("plan_paused", f"paused until {until}"))
        return self._state

    @pause.validator
    def _validate_pause(self, req: PauseRequest) -> None:
        self._require_open()
        if self._state.status not in (PlanStatus.ACTIVE, PlanStatus.PAUSED):
            raise ValueError(
                f"only a running plan can be paused (plan is {self._state.status.value})"
            )
        if req.until is not None and req.until <= workflow.now():
            raise ValueError("pause end must be in the future")

    @workflow.update
    async def resume(self) -> PlanState:
        self._resume(workflow.now())
        await self._mirror(self._log("plan_resumed", "resumed by owner"))
        return self._state

    @resume.validator
    def _validate_resume(self) -> None:
        self._require_open()
        if self._state.status not in (PlanStatus.PAUSED, PlanStatus.BLOCKED):
            raise ValueError(f"plan is not paused (plan is {self._state.status.value})")

    @workflow.update
    async def approve(self) -> PlanState:
        self._activate(workflow.now())
        await self._mirror(self._log("plan_approved", f"plan v{self._state.plan_version} started"))
        return self._state

    @approve.validator
    def _validate_approve(self) -> None:
        self._require_open()
        st = self._state
        if st.status != PlanStatus.AWAITING_APPROVAL:
            raise ValueError(f"already handled: plan is {st.status.value}")
        if self._generating or not st.steps:
            raise ValueError("there is no plan to approve yet")

    @workflow.update
    async def replace_plan(self, req: ReplacePlanRequest) -> PlanState:
        """New steps (or a fresh draft) become a new plan version; old rows are closed."""
        st = self._state
        if req.steps is None:
            old_steps = st.steps
            if not await self._generate():
                raise ApplicationError(f"could not draft a new plan: {st.last_error}")
            new_steps, st.steps = st.steps, old_steps
        else:
            new_steps = [StepState.from_step(s) for s in req.steps]
        for step in st.steps:
            if step.is_open:
                step.status = StepStatus.CANCELLED
        await self._mirror(self._log("plan_replaced", f"plan v{st.plan_version} replaced"))
        now = workflow.now()
        st.plan_version += 1
        st.steps = new_steps
        st.current_step_id = None
        if st.status == PlanStatus.AWAITING_APPROVAL:
            await self._mirror(self._log("plan_created", f"plan v{st.plan_version}"))
            await self._notify_plan_ready()
            return st
        if st.status == PlanStatus.BLOCKED:
            st.status = PlanStatus.ACTIVE
            st.blocked_reason = None
        status = st.status
        self._activate(now)
        if status == PlanStatus.PAUSED:
            st.status = PlanStatus.PAUSED
            st.paused_at = now
        await self._mirror(self._log("plan_created", f"plan v{st.plan_version} started"))
        return st

    @replace_plan.validator
    def _validate_replace(self, req: ReplacePlanRequest) -> None:
        self._require_open()
        if self._generating:
            raise ValueError("a plan is being drafted already")
        if req.steps is not None:
            check_steps(req.steps)

    @workflow.update
    async def set_schedule(self, schedule: Schedule) -> PlanState:
        """A new timezone or window moves the pending due times of this running plan too."""
        st = self._state
        st.schedule = schedule
        cur = st.current
        if cur is not None and cur.status == StepStatus.PENDING and st.target_at is not None:
            cur.due_at = self._fit(st.target_at)
            self._project()
        await self._mirror(self._log("schedule_changed", f"timezone {schedule.timezone}"))
        return st

    @set_schedule.validator
    def _validate_schedule(self, schedule: Schedule) -> None:
        self._require_open()


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
