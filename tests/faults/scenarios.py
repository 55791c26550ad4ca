"""The fault suite's engine: real worker processes, a PostgreSQL that can be stopped, the
Temporal dev server, and the Telegram/OpenAI emulators, driven by simulated owners who
answer every reminder, while faults are injected.

Each scenario reports what an owner and an operator would notice:

- lost: a step that fell due but was never reminded;
- duplicated: a second reminder of one step sooner than the nudge spacing (the SPEC's
  "never a burst"); `documented` counts those whose first send Telegram delivered
  without the answer reaching the worker (the one case the lease cannot rule out);
- after answer: a reminder that arrived after the owner had answered its step;
- late p50/p99: due time as the owner sees it (plan start for step 1, their answer to
  the previous step for the others) to the first reminder;
- mirror mismatches: plans whose rows differ from their `state` query at the end;
- recover: from the end of the fault until every reminder due before it went out;
- 429 per chat: Telegram's per-chat flood answers (the emulator enforces 1/s per chat).

`benchmarks/faults.py` runs the full sizes; tests/faults/test_fault_suite.py a short one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from emulators.openai_server import OpenAIEmulator
from emulators.telegram import TelegramEmulator
from storage.db import create_pool
from storage.leads import LeadRepository
from storage.migrate import apply_migrations
from telegram_ui.callbacks import StepAct, StepCallback
from temporal_client import plan_handle, start_plan
from tests.faults.harness import StoppablePostgres
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.errors import Rejection, rejection_of
from workflows.models import PlanInput, PlanState, PlanStep, Schedule, StepAction

ROOT = Path(__file__).resolve().parents[2]
ANYTIME = Schedule(
    timezone="UTC",
    window_start=clock_time(0),
    window_end=clock_time(23, 59, 59),
    workdays_only=False,
)
_GONE = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)
# A plan "day": nudges come after 24 such hours; a second reminder sooner is a duplicate.
DAY_SECONDS = 120


def steps(count: int) -> list[PlanStep]:
    """Every step due as soon as the previous one is answered (delay 0)."""
    return [
        PlanStep(step_id=i, action_type="email", description=f"Touch {i}", delay_days=0)
        for i in range(1, count + 1)
    ]


@dataclass
class Figures:
    scenario: str
    plans: int = 0
    reminders: int = 0
    lost: int = 0
    duplicated: int = 0
    documented: int = 0
    after_answer: int = 0
    late_p50: float = 0.0
    late_p99: float = 0.0
    mirror_mismatches: int = 0
    recover: float | None = None
    per_chat_429: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        recover = "-" if self.recover is None else f"{self.recover:.1f}s"
        notes = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (
            f"{self.scenario:<10} plans={self.plans} reminders={self.reminders} lost={self.lost} "
            f"duplicated={self.duplicated} (documented={self.documented}) "
            f"after_answer={self.after_answer} late_p50={self.late_p50:.2f}s "
            f"late_p99={self.late_p99:.2f}s mirror_mismatches={self.mirror_mismatches} "
            f"recover={recover} per_chat_429={self.per_chat_429}{notes}"
        )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the suite's process ends, however it ends."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerProcess:
    """`python worker.py` with the stack's settings; output kept for the log figures."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._running = asyncio.Event()

    async def start(self) -> float:
        """Start and wait until both queues poll; returns the seconds it took."""
        began = time.monotonic()
        self._running = asyncio.Event()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "worker.py"), cwd=str(ROOT), env=self._env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._pump = asyncio.create_task(self._read(self.proc))
        await asyncio.wait_for(self._running.wait(), 120)
        return time.monotonic() - began

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log_path.open("ab") as out:
            async for line in proc.stdout:
                out.write(line)
                out.flush()
                if b"worker running" in line:
                    self._running.set()

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._pump:
            with contextlib.suppress(Exception):
                await self._pump


class Owners:
    """Simulated salespeople: each reminder is answered (Done) after a short pause."""

    def __init__(self, telegram: TelegramEmulator, client: Client, answer: bool = True) -> None:
        self.telegram = telegram
        self.client = client
        self.answer = answer
        self.messages: dict[tuple[int, int, int], list[tuple[float, bool]]] = {}
        self.answered: dict[tuple[int, int, int], float] = {}
        # Failed taps by kind (the owner tapped again); reported with the figures.
        self.errors: dict[str, int] = {}
        self._cursor = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _scan(self) -> None:
        calls = self.telegram.calls("sendMessage")
        for call in calls[self._cursor :]:
            if call.status != 200:
                continue
            key = reminder_step(call.params.get("reply_markup"))
            if key is None:
                continue
            first = key not in self.messages
            self.messages.setdefault(key, []).append((call.at, call.dropped))
            if first and self.answer:
                task = asyncio.create_task(self._answer(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._cursor = len(calls)

    async def _answer(self, key: tuple[int, int, int]) -> None:
        lead, version, step = key
        await asyncio.sleep(random.uniform(0.2, 1.0))
        handle = plan_handle(self.client, lead)
        while True:
            try:
                await handle.execute_update(
                    EngagementPlanWorkflow.complete_step,
                    StepAction(step_id=step, plan_version=version),
                )
            except WorkflowUpdateFailedError as err:
                why = rejection_of(err)
                self.errors[f"refused:{why}"] = self.errors.get(f"refused:{why}", 0) + 1
                if why not in (Rejection.ALREADY_HANDLED, Rejection.PLAN_FINISHED):
                    await asyncio.sleep(2.0)  # "not due yet", "busy": the owner taps again
                    continue
            except RPCError as err:
                if err.status in _GONE:
                    return  # the plan is over
                self.errors[err.status.name] = self.errors.get(err.status.name, 0) + 1
                await asyncio.sleep(1.0)  # no worker right now: the owner taps again
                continue
            except Exception as err:  # timed out waiting for the update, …: tap again
                name = type(err).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                await asyncio.sleep(1.0)
                continue
            self.answered[key] = time.time()
            return

    async def run(self) -> None:
        while True:
            self._scan()
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def reminder_step(markup: Any) -> tuple[int, int, int] | None:
    """(lead, plan version, step) of a reminder, from its Done button's callback data."""
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return None
    if not isinstance(markup, dict):
        return None
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data") or ""
            if data.startswith("st:"):
                try:
                    cb = StepCallback.unpack(data)
                except (TypeError, ValueError):
                    continue
                if cb.act == StepAct.DONE:
                    return cb.lead_id, cb.version, cb.step_id
    return None


class Stack:
    """PostgreSQL (stoppable), a migrated database, emulators and worker processes around
    a Temporal server the caller provides (the suite's dev server, or one of its own)."""

    def __init__(self, client: Client, pg: StoppablePostgres, workdir: Path) -> None:
        self.client = client
        self.pg = pg
        self.workdir = workdir
        self.telegram = TelegramEmulator()
        self.openai = OpenAIEmulator()
        self.pool: asyncpg.Pool
        self.db_url = ""
        self.workers: list[WorkerProcess] = []
        # When each owner's first plan was started (wall clock).
        self.started: dict[int, float] = {}
        self.owner_of: dict[int, int] = {}
        self.lead_started: dict[int, float] = {}

    async def start(self, workers: int, **settings: str) -> None:
        name = "fs_" + uuid.uuid4().hex[:10]
        admin = await asyncpg.connect(self.pg.uri)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.db_url = self.pg.database_uri(name)
        await apply_migrations(self.db_url)
        self.pool = await create_pool(self.db_url)
        # Workflow ids are lead-<id> on a server other tests share: a block of our own.
        await self.pool.execute(
            "SELECT setval('lead_registry_id_seq', $1)", random.randrange(10**7, 10**9, 10**5)
        )
        await self.telegram.start()
        await self.openai.start()
        self.telegram.set_flood_limit(per_chat_per_second=1)
        env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_BASE": self.telegram.base_url,
            "OPENAI_API_KEY": "sk-fault-suite",
            "OPENAI_BASE_URL": self.openai.base_url,
            **{k.upper(): v for k, v in settings.items()},
        }
        self.workers = [
            WorkerProcess(env, self.workdir / f"worker-{i}.log") for i in range(workers)
        ]
        await asyncio.gather(*(w.start() for w in self.workers))

    async def new_plans(
        self, count: int, owners: int, step_count: int | None, *, per_second: float = 20
    ) -> list[int]:
        leads = []
        for n in range(count):
            owner = 50_000 + n % owners
            if owner not in self.telegram.chats:
                self.telegram.add_user(owner)
            lead = await LeadRepository(self.pool).create(
                telegram_id=owner, prospect_name=f"Prospect {n}", prospect_company="Faults Inc"
            )
            await start_plan(
                self.client,
                PlanInput(
                    lead_id=lead.id,
                    telegram_id=owner,
                    steps=None if step_count is None else steps(step_count),
                    approved=step_count is not None,
                    schedule=ANYTIME,
                    day_seconds=DAY_SECONDS,
                ),
            )
            leads.append(lead.id)
            self.owner_of[lead.id] = owner
            self.lead_started[lead.id] = time.time()
            self.started.setdefault(owner, time.time())
            await asyncio.sleep(1 / per_second)
        return leads

    async def wait_closed(self, leads: list[int], timeout: float) -> list[int]:
        """Wait until the plans' workflows are closed; returns those still open."""
        deadline = time.monotonic() + timeout
        open_ = list(leads)
        while open_ and time.monotonic() < deadline:
            still = []
            for lead in open_:
                desc = await plan_handle(self.client, lead).describe()
                if desc.status == WorkflowExecutionStatus.RUNNING:
                    still.append(lead)
            open_ = still
            if open_:
                await asyncio.sleep(2)
        return open_

    async def mirror_mismatches(self, leads: list[int]) -> int:
        bad = 0
        for lead in leads:
            try:
                state = await plan_handle(self.client, lead).query("state", result_type=PlanState)
            except Exception:
                bad += 1
                continue
            rows = await self.pool.fetch(
                "SELECT * FROM scheduled_reminders WHERE lead_id = $1 AND plan_version = $2 "
                "ORDER BY step_id",
                lead,
                state.plan_version,
            )
            got = [(r["step_id"], r["status"], r["reminder_count"], r["due_at"]) for r in rows]
            want = [(s.step_id, s.status.value, s.reminder_count, s.due_at) for s in state.steps]
            bad += got != want
        return bad

    async def close(self, leads: list[int]) -> None:
        for lead in leads:  # a plan left on a shared server would reach other tests' workers
            with contextlib.suppress(RPCError):
                await plan_handle(self.client, lead).terminate("fault suite over")
        await asyncio.gather(*(w.stop() for w in self.workers))
        await self.pool.close()
        await self.telegram.stop()
        await self.openai.stop()


async def measure(
    stack: Stack,
    owners: Owners,
    leads: list[int],
    scenario: str,
    fault_end: float | None,
    blocked_owners: frozenset[int] = frozenset(),
    died_at: list[float] | None = None,
) -> Figures:
    """Figures from the emulator's record, the mirror and the workflows."""
    fig = Figures(scenario, plans=len(leads))
    rows = await stack.pool.fetch(
        "SELECT lead_id, plan_version, step_id, due_at, telegram_id FROM scheduled_reminders "
        "WHERE lead_id = ANY($1::bigint[])",
        leads,
    )
    spacing = DAY_SECONDS  # 24 "hours" of a plan day
    lateness: list[float] = []
    backlog_cleared = fault_end
    now = time.time()
    for r in rows:
        key = (r["lead_id"], r["plan_version"], r["step_id"])
        sent = owners.messages.get(key, [])
        due: datetime | None = r["due_at"]
        if r["telegram_id"] in blocked_owners:
            continue
        if not sent:
            if due is not None and due.timestamp() < now - 30:
                fig.lost += 1
            continue
        fig.reminders += 1
        first_at = sent[0][0]
        # Due as the owner sees it: when the plan started (step 1), or when they answered
        # the step before (every step is due at once after the previous one).
        prev = owners.answered.get((key[0], key[1], key[2] - 1))
        due_at = prev if key[2] > 1 else stack.lead_started.get(key[0])
        if due_at is not None:
            lateness.append(max(0.0, first_at - due_at))
            if fault_end is not None and due_at < fault_end:
                backlog_cleared = max(backlog_cleared or 0.0, first_at)
        for (a, dropped), (b, _) in itertools.pairwise(sent):
            if b - a < spacing:
                fig.duplicated += 1
                # Telegram delivered, the answer never reached the worker: lost on the
                # wire, or the worker died right after the send (before it was recorded).
                fig.documented += dropped or any(k - 2.0 <= a <= k for k in died_at or [])
        answered = owners.answered.get(key)
        if answered is not None:
            fig.after_answer += sum(1 for at, _ in sent if at > answered + 0.5)
    fig.late_p50, fig.late_p99 = _pct(lateness, 0.5), _pct(lateness, 0.99)
    if fault_end is not None and backlog_cleared is not None:
        fig.recover = max(0.0, backlog_cleared - fault_end)
    fig.mirror_mismatches = await stack.mirror_mismatches(leads)
    fig.per_chat_429 = sum(1 for c in stack.telegram.calls("sendMessage") if c.status == 429)
    return fig


@asynccontextmanager
async def running(
    client: Client, pg: StoppablePostgres, workdir: Path, workers: int, **settings: str
) -> AsyncIterator[Stack]:
    stack = Stack(client, pg, workdir)
    await stack.start(workers, **settings)
    leads: list[int] = []
    try:
        yield stack
    finally:
        leads = [r["id"] for r in await stack.pool.fetch("SELECT id FROM lead_registry")]
        await stack.close(leads)


async def _drive(
    stack: Stack,
    plans: int,
    step_count: int,
    fault: Callable[[Stack], Awaitable[float | None]],
    scenario: str,
    timeout: float,
    owners_per_plan: int = 3,
    died_at: list[float] | None = None,
    blocked_owners: frozenset[int] = frozenset(),
    fault_after_start: bool = False,
) -> Figures:
    owners = Owners(stack.telegram, stack.client)
    watcher = asyncio.create_task(owners.run())
    try:
        starting = asyncio.create_task(
            stack.new_plans(plans, max(1, plans // owners_per_plan), step_count, per_second=10)
        )
        if fault_after_start:  # the suite itself needs the database to create plans
            await asyncio.shield(starting)
        fault_end = await fault(stack)
        leads = await starting
        # A blocked owner's plans wait (blocked) until the owner talks to the bot again.
        still_open = await stack.wait_closed(
            [lead for lead in leads if stack.owner_of[lead] not in blocked_owners], timeout
        )
        owners._scan()
        fig = await measure(stack, owners, leads, scenario, fault_end, blocked_owners, died_at)
        fig.notes["unfinished"] = len(still_open)
        if owners.errors:
            fig.notes["owner_retaps"] = ",".join(
                f"{k}:{v}" for k, v in sorted(owners.errors.items())
            )
        return fig
    finally:
        watcher.cancel()
        await owners.close()


# ---- scenarios ----


async def worker_kills(
    client: Client,
    pg: StoppablePostgres,
    workdir: Path,
    *,
    plans: int,
    kills: int,
    step_count: int = 3,
) -> Figures:
    """Two worker processes; one of them is SIGKILLed at a random moment, again and again,
    and restarted at once (as a supervisor would)."""
    async with running(client, pg, workdir, workers=2) as stack:
        restarts: list[float] = []
        died_at: list[float] = []

        async def fault(s: Stack) -> float | None:
            end = None
            for _ in range(kills):
                await asyncio.sleep(random.uniform(4, 12))
                victim = random.choice(s.workers)
                died_at.append(time.time())
                victim.kill()
                if victim.proc:
                    await victim.proc.wait()
                restarts.append(await victim.start())
                end = time.time()
            return end

        fig = await _drive(stack, plans, step_count, fault, "kill", timeout=600, died_at=died_at)
        fig.notes["kills"] = kills
        fig.notes["restart_to_ready_p50"] = (
            f"{statistics.median(restarts):.1f}s" if restarts else "-"
        )
        return fig


async def postgres_outage(
    client: Client,
    pg: StoppablePostgres,
    workdir: Path,
    *,
    plans: int,
    seconds: float,
    step_count: int = 3,
) -> Figures:
    async with running(client, pg, workdir, workers=1) as stack:

        async def fault(s: Stack) -> float | None:
            await asyncio.sleep(4)
            s.pg.stop()
            try:
                await asyncio.sleep(seconds)
            finally:
                s.pg.start()
            return time.time()

        fig = await _drive(
            stack, plans, step_count, fault, "postgres", timeout=600, fault_after_start=True
        )
        log = "".join(w.log_path.read_text(errors="replace") for w in stack.workers)
        fig.notes["outage_seconds"] = seconds
        fig.notes["log_lines"] = len(log.splitlines())
        fig.notes["tracebacks"] = log.count("Traceback (most recent call last)")
        if fig.notes["tracebacks"]:  # which ones: the last line of each
            lines = log.splitlines()
            ends = {
                lines[i]
                for i in range(1, len(lines))
                if lines[i - 1].startswith("  ") and not lines[i].startswith(" ")
            }
            fig.notes["traceback_ends"] = "|".join(sorted(ends))[:500]
        fig.notes["outage_warnings"] = log.count("PostgreSQL unavailable")
        fig.notes["back_lines"] = log.count("PostgreSQL is back")
        return fig


async def telegram_faults(
    client: Client,
    pg: StoppablePostgres,
    workdir: Path,
    *,
    plans: int,
    burst: int,
    step_count: int = 3,
) -> Figures:
    """429 storms (retry_after 2), 502s, answers held 5 s (under the 15-s HTTP timeout),
    answers lost after delivery (the documented duplicate), and one owner blocking the bot."""
    async with running(client, pg, workdir, workers=1) as stack:
        blocked = 50_000

        async def fault(s: Stack) -> float | None:
            await asyncio.sleep(3)
            s.telegram.block(blocked)
            s.telegram.fail_next("sendMessage", 429, retry_after=2, count=burst)
            s.telegram.fail_next("sendMessage", 502, count=burst)
            s.telegram.delay_next("sendMessage", 5, count=max(1, burst // 3), after_processing=True)
            s.telegram.drop_next("sendMessage", count=max(1, burst // 10), after_processing=True)
            while any(f.remaining > 0 for f in s.telegram.faults):  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            return time.time()

        fig = await _drive(
            stack,
            plans,
            step_count,
            fault,
            "telegram",
            timeout=600,
            blocked_owners=frozenset({blocked}),
            fault_after_start=True,
        )
        injected = {f.status: f.hits for f in stack.telegram.faults if f.kind == "error"}
        fig.per_chat_429 = sum(
            1 for c in stack.telegram.calls("sendMessage") if c.status == 429
        ) - injected.get(429, 0)
        fig.notes["injected_429"] = injected.get(429, 0)
        fig.notes["injected_502"] = injected.get(502, 0)
        fig.notes["lost_answers"] = max(1, burst // 10)
        states = []
        for row in await stack.pool.fetch(
            "SELECT id FROM lead_registry WHERE telegram_id = $1", blocked
        ):
            st = await plan_handle(stack.client, row["id"]).query("state", result_type=PlanState)
            states.append(st.status.value)
        fig.notes["blocked_owner_plans"] = ",".join(sorted(set(states))) or "-"
        return fig


async def planner_faults(
    client: Client, pg: StoppablePostgres, workdir: Path, *, plans: int
) -> Figures:
    """Drafts against a planner that hangs, answers 500 or garbage: how soon, and in what
    words, does the owner hear? (Deadline 20 s and 5-s requests here; 60/25 s in
    production.)"""
    async with running(
        client, pg, workdir, workers=1,
        planner_deadline_seconds="20", planner_request_timeout_seconds="5",
    ) as stack:  # fmt: skip
        third = max(1, plans // 3)
        stack.openai.hang(30, count=third * 4)
        stack.openai.fail(500, count=third * 10, message="boom: upstream exploded")
        stack.openai.garbage(count=third * 10)
        await stack.new_plans(plans, plans, None, per_second=5)
        deadline = time.monotonic() + 300
        heard: dict[int, tuple[float, str]] = {}
        while len(heard) < plans and time.monotonic() < deadline:
            for call in stack.telegram.calls("sendMessage", ok=True):
                text = str(call.params.get("text", ""))
                if call.chat_id not in heard and (
                    "Could not draft" in text or "Engagement plan" in text
                ):
                    heard[call.chat_id] = (call.at, text)
            await asyncio.sleep(0.5)
        fig = Figures("planner", plans=plans)
        waits = [at - stack.started[owner] for owner, (at, _) in heard.items()]
        fig.late_p50, fig.late_p99 = _pct(waits, 0.5), _pct(waits, 0.99)
        texts = [t for _, t in heard.values()]
        fig.lost = plans - len(heard)
        fig.notes["failed_drafts"] = sum("Could not draft" in t for t in texts)
        fig.notes["raw_provider_text"] = sum(
            "Error code" in t or "boom" in t or "<html" in t for t in texts
        )
        fig.notes["planner_requests"] = len(stack.openai.completions)
        fig.notes["note"] = "late=seconds from start to the owner's answer"
        return fig
