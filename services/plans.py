"""Steering a lead's plan, for the bot and the Mini App alike: one `PlanService`.

Handlers (bot routers, Mini App routes) stay about conversation; everything that talks to
a plan workflow, and the translation of Temporal's failures into one `ActionRejected`
carrying the workflow's typed `Rejection`, lives here, so both front ends get the same
validators and the same refusals. Reads (lists, timelines) come from the mirror
(storage.lead_views), so Temporal is asked only to change things. This package imports
neither `bot` nor `webapp` (tests/test_layering.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from services.admission import Busy, UpdateAdmission
from settings import Settings
from storage.activity_log import ActivityLogRepository
from storage.leads import LeadRepository
from storage.models import CLOSED_LEAD_STATUSES, Lead, LeadStatus, User
from storage.plan_cancels import PlanCancelOutbox
from temporal_client import PlanHandle, plan_handle, start_plan
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.errors import Rejection, rejection_of
from workflows.models import (
    ApproveRequest,
    CancelRequest,
    EscalationPolicy,
    PauseRequest,
    PlanInput,
    PlanState,
    ReplacePlanRequest,
    Schedule,
    SnoozeAction,
    StepAction,
)

log = logging.getLogger("leadpilot.plans")

T = TypeVar("T")


# A query needs a worker to answer; the bot must not hang when none is running.
QUERY_TIMEOUT = timedelta(seconds=5)
# A tap must be answered quickly even when no worker runs; the callback answer says so.
UPDATE_TIMEOUT = timedelta(seconds=6)
# Starting a workflow needs only the server, too.
START_TIMEOUT = timedelta(seconds=6)
# A cancel signal needs only the server; an unreachable one goes to the outbox.
SIGNAL_TIMEOUT = timedelta(seconds=5)


class ActionRejected(Exception):
    """The plan refused an owner action, or could not be reached to take it.

    `kind` is the workflow's typed reason (None: not a refusal, e.g. no worker in time or
    Temporal unreachable); `reason` is the workflow's own sentence, for the log;
    `pending`: accepted, and applied once a worker takes it (NoWorkerInTime).
    """

    pending = False
    busy = False

    def __init__(self, kind: Rejection | None, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.unreachable = unreachable

    @property
    def already_handled(self) -> bool:
        return self.kind in (Rejection.ALREADY_HANDLED, Rejection.PLAN_FINISHED)


class Overloaded(ActionRejected):
    """Not sent: more plan updates were in flight than the workers keep up with."""

    busy = True


class NoWorkerInTime(ActionRejected):
    """Accepted by the server but no worker took it within the RPC timeout (a deploy)."""

    pending = True


def user_schedule(user: User | None) -> Schedule:
    """The owner's reminder schedule as the workflow takes it (defaults for the unknown)."""
    if user is None:
        return Schedule()
    return Schedule(
        timezone=user.timezone,
        window_start=user.window_start,
        window_end=user.window_end,
        workdays_only=user.workdays_only,
    )


def is_closed(lead: Lead) -> bool:
    return lead.status in CLOSED_LEAD_STATUSES


class PlanService:
    """Starts and steers lead plans; translates failures into ActionRejected."""

    def __init__(self, client: Client, pool: asyncpg.Pool, settings: Settings) -> None:
        self.client = client
        self.pool = pool
        self.settings = settings
        target = settings.plan_update_latency_target
        self.admission = UpdateAdmission(target) if target > 0 else None

    def handle(self, lead_id: int) -> PlanHandle:
        return plan_handle(self.client, lead_id)

    async def start(self, lead: Lead, user: User | None) -> None:
        """Start the lead's plan without steps: the workflow drafts it and asks for approval.

        A closed lead has no plan: refused here (LeadClosed) before Temporal is asked.
        Raises RPCError when Temporal can't be reached (within START_TIMEOUT).
        """
        if is_closed(lead):
            raise ActionRejected(Rejection.LEAD_CLOSED, f"lead is {lead.status.value}")
        s = self.settings
        start = start_plan(
            self.client,
            PlanInput(
                lead_id=lead.id,
                telegram_id=lead.telegram_id,
                steps=None,
                schedule=user_schedule(user),
                escalation=EscalationPolicy(
                    nudge_after_hours=s.nudge_after_hours,
                    max_reminders=s.max_reminders,
                    auto_snooze_days=s.auto_snooze_days,
                ),
                day_seconds=s.day_seconds,
                plan_version=lead.next_plan_version,
                send_lead_seconds=s.send_lead_seconds,
            ),
        )
        try:  # the client retries an unreachable server for long; a tap can't wait that long
            await asyncio.wait_for(start, START_TIMEOUT.total_seconds())
        except TimeoutError as err:
            raise RPCError(
                "starting the plan timed out", RPCStatusCode.DEADLINE_EXCEEDED, b""
            ) from err

    async def state(self, lead_id: int) -> PlanState | None:
        """The plan as the workflow sees it; None if there is none or nobody answers.

        The bot's screens read the mirror instead; this is for callers that need the live
        plan (it needs a worker to answer)."""
        try:
            return await self.handle(lead_id).query(
                EngagementPlanWorkflow.state, rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError, TimeoutError) as err:
            log.info("no plan state for lead %s: %s", lead_id, err)
            return None

    async def _update(
        self, lead_id: int, update: Any, *arg: Any, patient: bool = False
    ) -> PlanState:
        """Run one update to completion; every way it can fail becomes an ActionRejected."""
        state: PlanState = await self._call(
            lambda: self.handle(lead_id).execute_update(update, *arg, rpc_timeout=UPDATE_TIMEOUT),
            patient,
        )
        return state

    async def _accept(self, lead_id: int, update: Any, *arg: Any) -> None:
        """Return as soon as the validator accepted the update: long work (drafting a plan)
        then runs on without holding the tap."""
        await self._call(
            lambda: self.handle(lead_id).start_update(
                update,
                *arg,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=UPDATE_TIMEOUT,
            )
        )

    async def _call(self, call: Callable[[], Awaitable[T]], patient: bool = False) -> T:
        """Send the update once admitted (`self.admission`): a tap that finds no room in
        time was never sent, and hears so; a `patient` one (background work) waits."""
        if self.admission is None:
            return await self._translated(call())
        try:
            async with self.admission.slot(patient):
                return await self._translated(call())
        except Busy as err:
            log.warning("plan update refused: %s", err)
            raise Overloaded(None, str(err)) from err

    @staticmethod
    async def _translated(call: Awaitable[T]) -> T:
        try:
            # The RPC timeout bounds each call the client makes, and the client may make
            # more than one (polling for the outcome): this bounds the whole wait, so the
            # tap is answered before the bot's "still working" fallback.
            async with asyncio.timeout(UPDATE_TIMEOUT.total_seconds() + 1):
                return await call
        except TimeoutError as err:
            raise NoWorkerInTime(None, "no worker in time") from err
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ActionRejected(rejection_of(err), reason) from err
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            # No worker took it in time (a deploy, an outage); it is applied when one does.
            raise NoWorkerInTime(None, "no worker in time") from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ActionRejected(Rejection.PLAN_FINISHED, "no running plan") from err
            raise ActionRejected(None, str(err), unreachable=True) from err

    async def complete(self, lead_id: int, version: int, step_id: int) -> PlanState:
        action = StepAction(step_id=step_id, plan_version=version)
        return await self._update(lead_id, EngagementPlanWorkflow.complete_step, action)

    async def skip(self, lead_id: int, version: int, step_id: int) -> PlanState:
        action = StepAction(step_id=step_id, plan_version=version)
        return await self._update(lead_id, EngagementPlanWorkflow.skip_step, action)

    async def snooze(self, lead_id: int, version: int, step_id: int, days: int) -> PlanState:
        action = SnoozeAction(step_id=step_id, plan_version=version, days=days)
        return await self._update(lead_id, EngagementPlanWorkflow.snooze_step, action)

    async def approve(self, lead: Lead, version: int) -> PlanState:
        """Start the draft the owner saw (`version`); a closed lead is refused."""
        if is_closed(lead):
            raise ActionRejected(Rejection.LEAD_CLOSED, f"lead is {lead.status.value}")
        return await self._update(
            lead.id, EngagementPlanWorkflow.approve, ApproveRequest(plan_version=version)
        )

    async def regenerate(self, lead: Lead) -> None:
        """Ask for a fresh draft and return once the plan accepted: the draft arrives as
        its own message (PLAN_READY) however long the planner takes."""
        if is_closed(lead):
            raise ActionRejected(Rejection.LEAD_CLOSED, f"lead is {lead.status.value}")
        await self._accept(
            lead.id, EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=None)
        )

    # `patient`: the owner's change is already recorded (a vacation, a bulk change of all
    # plans) and carried out in the background: it waits for room instead of Overloaded.

    async def pause(
        self, lead_id: int, until: datetime | None = None, *, patient: bool = False
    ) -> PlanState:
        return await self._update(
            lead_id, EngagementPlanWorkflow.pause, PauseRequest(until=until), patient=patient
        )

    async def resume(self, lead_id: int, *, patient: bool = False) -> PlanState:
        return await self._update(lead_id, EngagementPlanWorkflow.resume, patient=patient)

    async def set_schedule(
        self, lead_id: int, schedule: Schedule, *, patient: bool = False
    ) -> PlanState:
        return await self._update(
            lead_id, EngagementPlanWorkflow.set_schedule, schedule, patient=patient
        )

    async def cancel(self, lead_id: int, reason: str) -> None:
        """The cancel signal is idempotent; a finished or missing plan has nothing to stop.

        Raises RPCError when Temporal can't be reached."""
        try:
            await self.handle(lead_id).signal(
                EngagementPlanWorkflow.cancel,
                CancelRequest(reason=reason),
                rpc_timeout=SIGNAL_TIMEOUT,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("cancel for lead %s: no plan to stop", lead_id)

    async def close_lead(
        self, lead_id: int, owner: int, status: LeadStatus
    ) -> tuple[LeadStatus, Lead, bool] | None:
        """Change the lead's status (logged); closing it stops its plan, durably.

        The status, its log line and, when the lead closes, a `plan_cancel_outbox` row are
        written in one transaction; then the signal is tried once. Returns (previous, lead, stopped) where
        `stopped` False means the cancel waits in the outbox (Temporal unreachable) and
        CancelRetrier delivers it. None: not the owner's lead.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            change = await LeadRepository(conn).set_status(lead_id, owner, status)
            if change is None:
                return None
            previous, lead = change
            if previous != lead.status:
                await ActivityLogRepository(conn).add(
                    lead.id,
                    owner,
                    "status_change",
                    f"{previous.value} → {lead.status.value}",
                    metadata={"from": previous.value, "to": lead.status.value},
                )
            closing = is_closed(lead) and previous not in CLOSED_LEAD_STATUSES
            reason = f"lead {lead.status.value}"
            if closing:
                await PlanCancelOutbox(conn).record(lead.id, owner, reason)
        if not closing:
            return previous, lead, True
        return previous, lead, await self.deliver_cancel(lead.id, reason)

    async def deliver_cancel(self, lead_id: int, reason: str) -> bool:
        """Send an outboxed cancel; True once the plan has it (the row is then gone)."""
        outbox = PlanCancelOutbox(self.pool)
        try:
            await self.cancel(lead_id, reason)
        except Exception as err:  # any failure keeps the row: the retrier tries again
            log.warning("cancel for lead %s not delivered yet: %r", lead_id, err)
            await outbox.failed(lead_id, repr(err), CancelRetrier.backoff(0))
            return False
        await outbox.delivered(lead_id)
        return True

    def days_from_now(self, n: float) -> datetime:
        """n plan days from now, in the plan's (possibly compressed) day length."""
        return datetime.now(UTC) + timedelta(seconds=n * self.settings.day_seconds)


class CancelRetrier:
    """Delivers outboxed cancel signals until each plan has its own (runs in the bot).

    Any number of bot replicas may run it: the signal is idempotent and a delivered row
    is deleted, so a second delivery of the same row is harmless.
    """

    INTERVAL = 2.0

    def __init__(self, plans: PlanService) -> None:
        self.plans = plans

    @staticmethod
    def backoff(attempts: int) -> float:
        return float(min(2**attempts, 60))

    async def run_once(self) -> int:
        """Try every due row once; returns how many reached their plan."""
        outbox = PlanCancelOutbox(self.plans.pool)
        delivered = 0
        for row in await outbox.due():
            try:
                await self.plans.cancel(row.lead_id, row.reason)
            except Exception as err:  # unreachable, or anything else: keep it, back off
                await outbox.failed(row.lead_id, repr(err), self.backoff(row.attempts + 1))
                continue
            await outbox.delivered(row.lead_id)
            log.info("cancel for lead %s delivered after %d tries", row.lead_id, row.attempts)
            delivered += 1
        return delivered

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the database may be away too; try again next round
                log.warning("cancel retrier round failed", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), self.INTERVAL)
            except TimeoutError:
                pass
