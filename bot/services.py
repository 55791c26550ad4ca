"""The bot's side of Temporal and PostgreSQL: one object the handlers get injected.

Handlers stay about conversation; everything that talks to a plan workflow, and the
translation of Temporal's failures into one `ActionRejected` with a readable reason,
lives here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from settings import Settings
from storage.leads import LeadRepository
from storage.models import CLOSED_LEAD_STATUSES, Lead, User
from temporal_client import PlanHandle, plan_handle, start_plan
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import (
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

log = logging.getLogger("leadpilot.bot")


# A query needs a worker to answer; the bot must not hang when none is running.
QUERY_TIMEOUT = timedelta(seconds=5)
# A tap must be answered quickly even when no worker runs; the callback answer says so.
UPDATE_TIMEOUT = timedelta(seconds=10)
# How many plans a bulk action (/pause, /timezone …) touches at once.
BULK_CONCURRENCY = 8
MAX_BULK_LEADS = 1000


class ActionRejected(Exception):
    """The plan refused an owner action (stale button, double tap, finished plan…)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def already_handled(self) -> bool:
        return self.reason.lower().startswith(("already handled", "plan already"))


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


class PlanService:
    """Starts, queries and steers lead plans; translates failures into ActionRejected."""

    def __init__(self, client: Client, pool: asyncpg.Pool, settings: Settings) -> None:
        self.client = client
        self.pool = pool
        self.settings = settings

    def handle(self, lead_id: int) -> PlanHandle:
        return plan_handle(self.client, lead_id)

    async def start(self, lead: Lead, user: User | None) -> None:
        """Start the lead's plan without steps: the workflow drafts it and asks for approval."""
        s = self.settings
        await start_plan(
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
            ),
        )

    async def state(self, lead_id: int) -> PlanState | None:
        """The plan as the workflow sees it; None if there is none or nobody answers."""
        try:
            return await self.handle(lead_id).query(
                EngagementPlanWorkflow.state, rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError, TimeoutError) as err:
            log.info("no plan state for lead %s: %s", lead_id, err)
            return None

    async def _update(self, lead_id: int, update: Any, *arg: Any) -> PlanState:
        """Run one update; every way it can fail becomes an ActionRejected with a reason."""
        try:
            state: PlanState = await self.handle(lead_id).execute_update(
                update, *arg, rpc_timeout=UPDATE_TIMEOUT
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ActionRejected(reason) from err
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            # No worker took it in time (a deploy, an outage); it is applied when one does.
            raise ActionRejected(
                "⏳ taking longer than usual; the plan will catch up, check it in a minute"
            ) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ActionRejected("plan already finished") from err
            raise ActionRejected("the planner is unreachable right now; try again later") from err
        return state

    async def complete(self, lead_id: int, version: int, step_id: int) -> PlanState:
        action = StepAction(step_id=step_id, plan_version=version)
        return await self._update(lead_id, EngagementPlanWorkflow.complete_step, action)

    async def skip(self, lead_id: int, version: int, step_id: int) -> PlanState:
        action = StepAction(step_id=step_id, plan_version=version)
        return await self._update(lead_id, EngagementPlanWorkflow.skip_step, action)

    async def snooze(self, lead_id: int, version: int, step_id: int, days: int) -> PlanState:
        action = SnoozeAction(step_id=step_id, plan_version=version, days=days)
        return await self._update(lead_id, EngagementPlanWorkflow.snooze_step, action)

    async def approve(self, lead_id: int) -> PlanState:
        return await self._update(lead_id, EngagementPlanWorkflow.approve)

    async def regenerate(self, lead_id: int) -> PlanState:
        return await self._update(
            lead_id, EngagementPlanWorkflow.replace_plan, ReplacePlanRequest(steps=None)
        )

    async def pause(self, lead_id: int, until: datetime | None = None) -> PlanState:
        return await self._update(lead_id, EngagementPlanWorkflow.pause, PauseRequest(until=until))

    async def resume(self, lead_id: int) -> PlanState:
        return await self._update(lead_id, EngagementPlanWorkflow.resume)

    async def set_schedule(self, lead_id: int, schedule: Schedule) -> PlanState:
        return await self._update(lead_id, EngagementPlanWorkflow.set_schedule, schedule)

    async def cancel(self, lead_id: int, reason: str) -> None:
        """The cancel signal is idempotent; a finished or missing plan has nothing to stop."""
        try:
            await self.handle(lead_id).signal(
                EngagementPlanWorkflow.cancel, CancelRequest(reason=reason)
            )
        except RPCError as err:
            log.info("cancel for lead %s not delivered: %s", lead_id, err)

    def days_from_now(self, n: float) -> datetime:
        """n plan days from now, in the plan's (possibly compressed) day length."""
        return datetime.now(UTC) + timedelta(seconds=n * self.settings.day_seconds)

    async def for_each_open_plan(
        self, telegram_id: int, action: Callable[[int], Awaitable[Any]]
    ) -> tuple[int, int]:
        """Apply `action(lead_id)` to every open lead of the owner; (applied, rejected).

        Plans that are finished or refuse (e.g. pausing one that awaits approval) are
        counted, not fatal: a vacation pause must not stop at the first closed lead.
        """
        leads = await LeadRepository(self.pool).list_for_owner(telegram_id, limit=MAX_BULK_LEADS)
        gate = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(lead: Lead) -> bool:
            async with gate:
                try:
                    await action(lead.id)
                except ActionRejected:
                    return False
                return True

        results = await asyncio.gather(
            *(one(lead) for lead in leads if lead.status not in CLOSED_LEAD_STATUSES)
        )
        applied = sum(results)
        return applied, len(results) - applied
