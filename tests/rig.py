"""A running plan stack for tests: real workers, PostgreSQL, the Telegram emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, time
from typing import Any, TypeVar

import asyncpg
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from settings import Settings
from storage.leads import LeadRepository
from storage.models import Reminder
from storage.reminders import ReminderRepository
from telegram_ui.session import make_bot
from temporal_client import PlanHandle, plan_handle, start_plan
from worker import create_workers
from workflows.models import PlanInput, PlanState, PlanStep, Schedule

T = TypeVar("T")

STEPS = [
    PlanStep(
        step_id=1,
        action_type="email",
        description="Intro email",
        suggested_text="Hi!",
        delay_days=0,
    ),
    PlanStep(
        step_id=2,
        action_type="linkedin",
        description="Connect",
        suggested_text="Hello",
        delay_days=2,
    ),
    PlanStep(
        step_id=3,
        action_type="email",
        description="Value follow-up",
        suggested_text="Case",
        delay_days=5,
    ),
    PlanStep(
        step_id=4, action_type="call", description="Call", suggested_text="Script", delay_days=9
    ),
    PlanStep(
        step_id=5,
        action_type="email",
        description="Case study",
        suggested_text="Study",
        delay_days=14,
    ),
    PlanStep(
        step_id=6, action_type="email", description="Breakup", suggested_text="Bye", delay_days=21
    ),
]

OWNER = 4242
# Every minute of every day: due times stay exactly where the plan puts them.
ANYTIME = Schedule(
    timezone="UTC", window_start=time(0), window_end=time(23, 59, 59), workdays_only=False
)


async def describe_raw(handle: WorkflowHandle[Any, Any]) -> DescribeWorkflowExecutionResponse:
    """The server's description, undecoded: the time-skipping server stores an unset
    Datetime search attribute as empty bytes, which the SDK's describe() cannot read."""
    client = handle._client
    return await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=handle.id)
        )
    )


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll until `check` returns something truthy; real seconds, not workflow time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(0.05)


class PlanRig:
    def __init__(
        self,
        client: Client,
        pool: asyncpg.Pool,
        telegram: Any,
        make_workers: Callable[[], list[Worker]] | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.telegram = telegram
        self._make_workers = make_workers
        self._workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start_workers(self) -> None:
        """Production workers, as worker.py builds them (again, after stop_workers)."""
        assert self._make_workers is not None and not self._workers
        self._workers = self._make_workers()
        self._tasks = [asyncio.create_task(w.run()) for w in self._workers]

    async def stop_workers(self) -> None:
        """Graceful shutdown, as on a deploy."""
        await asyncio.gather(*(w.shutdown() for w in self._workers), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._workers, self._tasks = [], []

    async def new_lead(self, owner: int = OWNER, name: str = "Ada Lovelace") -> int:
        if owner not in self.telegram.chats:
            self.telegram.add_user(owner)  # the owner has talked to the bot
        lead = await LeadRepository(self.pool).create(
            telegram_id=owner, prospect_name=name, prospect_company="Analytical Engines"
        )
        return lead.id

    async def start(self, lead_id: int, owner: int = OWNER, **fields: Any) -> PlanHandle:
        fields.setdefault("steps", STEPS)
        return await start_plan(
            self.client, PlanInput(lead_id=lead_id, telegram_id=owner, **fields)
        )

    async def wait_state(
        self, handle: PlanHandle, predicate: Callable[[PlanState], bool], timeout: float = 15.0
    ) -> PlanState:
        async def check() -> PlanState | None:
            try:
                state = await handle.query("state", result_type=PlanState)
            except RPCError as e:
                # On two loaded cores a query that lands while the plan replays its
                # history (after continue-as-new or an eviction) can miss its deadline;
                # the state is still coming, so ask again until our own timeout.
                if e.status != RPCStatusCode.DEADLINE_EXCEEDED:
                    raise
                return None
            return state if predicate(state) else None

        return await eventually(check, timeout)

    async def assert_mirror_matches(self, state: PlanState) -> None:
        """The rows a user or the bot reads say exactly what the workflow says.

        The workflow counts a revision before the mirror write that carries it runs (a
        local activity), so a query can return a state whose rows are still being
        written: they get a few seconds to catch up."""
        repo = ReminderRepository(self.pool)
        difference = ""

        async def same() -> bool:
            nonlocal difference
            difference = mirror_difference(await repo.get_for_lead(state.lead_id), state)
            return not difference

        try:
            await eventually(same, 5)
        except AssertionError:
            raise AssertionError(difference) from None


def mirror_difference(rows: list[Reminder], state: PlanState) -> str:
    """How the rows differ from the plan's state ("" if they don't)."""
    got_ids, want_ids = [r.step_id for r in rows], [s.step_id for s in state.steps]
    if got_ids != want_ids:
        return f"mirror steps {got_ids} != workflow {want_ids}"
    for row, step in zip(rows, state.steps, strict=True):
        got = (
            row.plan_version,
            row.status.value,
            row.due_at,
            row.reminder_count,
            row.snooze_count,
            row.last_reminded_at,
            row.completed_at,
        )
        want = (
            state.plan_version,
            step.status.value,
            step.due_at,
            step.reminder_count,
            step.snooze_count,
            step.last_reminded_at,
            step.completed_at,
        )
        if got != want:
            return f"step {step.step_id}: mirror {got} != workflow {want}"
    return ""


@asynccontextmanager
async def plan_rig(
    client: Client, db_url: str, pool: asyncpg.Pool, telegram: Any, **settings: Any
) -> AsyncIterator[PlanRig]:
    # Production runs plan code outside the sandbox (BENCHMARKS.md); the tests keep it,
    # so a nondeterministic call in workflow code fails here first.
    settings.setdefault("workflow_sandbox", "full")
    cfg = Settings(
        database_url=db_url,
        telegram_bot_token="123456:TEST",
        telegram_api_base=telegram.base_url,
        **settings,
    )
    bot = make_bot(cfg.telegram_bot_token.get_secret_value(), cfg.telegram_api_base)
    rig = PlanRig(client, pool, telegram, lambda: create_workers(client, pool, bot, cfg))
    rig.start_workers()
    try:
        yield rig
    finally:
        # End this test's plans: a plan left open on a shared server would be picked up
        # by the next test's workers, against another database.
        for row in await pool.fetch("SELECT id FROM lead_registry"):
            with contextlib.suppress(RPCError):
                await plan_handle(client, row["id"]).terminate("test over")
        await rig.stop_workers()
        await bot.session.close()


def local(dt: datetime | None, tz: str) -> datetime:
    from zoneinfo import ZoneInfo

    assert dt is not None
    return dt.astimezone(ZoneInfo(tz))
