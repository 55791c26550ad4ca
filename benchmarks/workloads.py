"""The issue-9 workloads on the real stack (benchmarks/stack.py) and the figures they yield.

Each row group is one function taking the running `Stack` and a size, returning
`Figure`s. Lateness is measured the way an owner sees it: the plan's due time (the
workflow's, from the mirror) to the moment the Telegram emulator accepted the
sendMessage carrying that reminder's buttons.

(Over our ~500-line norm: the row groups at the bottom share the enrolment, delivery
tracking, tapping and history accounting above them, and read best beside them.)
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time as clock
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from benchmarks.stack import Stack, cpu_seconds, load_average, rss_mib
from emulators.telegram import Call
from settings import Settings
from telegram_ui.callbacks import LeadAct, LeadCallback, StepAct, StepCallback
from temporal_client import plan_handle, start_plan
from tests.faults.scenarios import reminder_step
from workflows.models import EscalationPolicy, PlanInput, PlanStep, Schedule

# Plans start as the product starts them: with the default send lead.
SEND_LEAD: float = Settings.model_fields["send_lead_seconds"].default

ANYTIME = Schedule(
    timezone="UTC", window_start=clock(0), window_end=clock(23, 59, 59), workdays_only=False
)
# Nudges far beyond any run, so every reminder a run sees is a first reminder.
NO_NUDGES = EscalationPolicy(nudge_after_hours=[10_000.0, 20_000.0])
SEND_LIMIT = 25.0  # TELEGRAM_SENDS_PER_SECOND, the production default
# Plans toggled in the "plans in the cache" tap figure: well inside MAX_CACHED_WORKFLOWS.
HOT_TOGGLES = 200
# Temporal Cloud, pay-as-you-go, first 5M Actions of a month (docs.temporal.io/cloud/pricing).
CLOUD_USD_PER_MILLION_ACTIONS = 50.0


@dataclass
class Figure:
    group: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def add(self, group: str, name: str, value: str, target: str = "", met: bool | None = None,
            note: str = "") -> None:  # fmt: skip
        self.figures.append(Figure(group, name, value, target, met, note))
        print(f"  {name}: {value}" + (f"  (target {target})" if target else ""), flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cpu_per(parts: dict[str, float], n: int) -> str:
    """CPU seconds by part of the stack as milliseconds per unit of work (n units)."""
    return ", ".join(f"{k} {v / max(1, n) * 1000:.1f} ms" for k, v in parts.items())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def sleeping_steps() -> list[PlanStep]:
    """A realistic plan of 5 steps, the first due in 30 days: it sleeps for the whole run."""
    return [
        PlanStep(step_id=i, action_type="email", description=f"Touch {i}",
                 suggested_text="Hello, following up.", delay_days=30 + 3 * i)
        for i in range(1, 6)
    ]  # fmt: skip


def one_step(delay_days: int = 1) -> list[PlanStep]:
    return [PlanStep(step_id=1, action_type="call", description="Call them", delay_days=delay_days)]


# ---------------------------------------------------------------- enrolment


async def create_leads(stack: Stack, owners: list[int], prefix: str) -> list[int]:
    """Lead rows in one statement (what /add would have written one by one)."""
    rows = await stack.pool.fetch(
        "INSERT INTO lead_registry (telegram_id, prospect_name, prospect_company) "
        "SELECT o, $2 || n, 'Bench Ltd' FROM unnest($1::bigint[]) WITH ORDINALITY AS t(o, n) "
        "RETURNING id",
        owners,
        prefix,
    )
    return sorted(r["id"] for r in rows)


async def mirrored(stack: Stack, lo: int, hi: int) -> int:
    return int(
        await stack.pool.fetchval(
            "SELECT count(DISTINCT lead_id) FROM scheduled_reminders WHERE lead_id BETWEEN $1 AND $2",
            lo,
            hi,
        )
    )


@dataclass
class Enrolment:
    plans: int
    accepted_s: float  # every start_plan call answered
    live_s: float  # every plan's rows in scheduled_reminders
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per part of the stack

    def cpu_per_plan(self) -> str:
        return cpu_per(self.cpu, self.plans)

    @property
    def accept_rate(self) -> float:
        return self.plans / self.accepted_s

    @property
    def live_rate(self) -> float:
        return self.plans / self.live_s


async def enrol(
    stack: Stack,
    leads: list[int],
    owner_of: dict[int, int],
    steps: list[PlanStep],
    day_seconds: int,
    *,
    per_second: float | None = None,
    in_flight: int = 64,
    timeout: float = 1800,
) -> Enrolment:
    """start_plan for every lead (as Start plan does), then wait until all are mirrored.

    `per_second` paces the starts (due times then follow the same pace); None starts
    them as fast as `in_flight` concurrent calls allow (a bulk import)."""
    began = time.monotonic()
    cpu0 = stack.cpu()
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int, lead: int) -> None:
        if per_second:
            await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
        async with sem:
            await start_plan(
                stack.client,
                PlanInput(
                    lead_id=lead, telegram_id=owner_of[lead], steps=steps, approved=True,
                    schedule=ANYTIME, day_seconds=day_seconds, escalation=NO_NUDGES,
                    send_lead_seconds=SEND_LEAD,
                ),
            )  # fmt: skip

    await asyncio.gather(*(one(i, lead) for i, lead in enumerate(leads)))
    accepted = time.monotonic() - began
    lo, hi = min(leads), max(leads)
    while await mirrored(stack, lo, hi) < len(leads):
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"enrolment of {len(leads)} plans not mirrored in {timeout:.0f} s")
        await asyncio.sleep(0.2)
    live = time.monotonic() - began
    return Enrolment(len(leads), accepted, live, stack.cpu_since(cpu0))


# ---------------------------------------------------------------- reading Telegram


def step_key(call: Call) -> tuple[int, int, int] | None:
    """(lead, plan version, step) of a reminder, from its Done button."""
    return reminder_step(call.params.get("reply_markup"))


class Deliveries:
    """The reminders Telegram accepted, by step, read incrementally from the emulator."""

    def __init__(self, stack: Stack) -> None:
        self.telegram = stack.telegram
        self.by_step: dict[tuple[int, int, int], list[Call]] = {}
        self.order: list[tuple[tuple[int, int, int], Call]] = []
        self._cursor = 0
        self.too_many = 0  # 429s (bot-wide or per chat)

    def scan(self) -> list[tuple[tuple[int, int, int], Call]]:
        calls = self.telegram._calls  # the emulator's record, oldest first
        new = []
        for call in calls[self._cursor :]:
            if call.method != "sendMessage":
                continue
            if call.status == 429:
                self.too_many += 1
                continue
            if not call.ok:
                continue
            key = step_key(call)
            if key is None:
                continue
            self.by_step.setdefault(key, []).append(call)
            self.order.append((key, call))
            new.append((key, call))
        self._cursor = len(calls)
        return new

    def duplicates(self, leads: Iterable[int] | None = None) -> int:
        wanted = None if leads is None else set(leads)
        return sum(
            len(calls) - 1
            for key, calls in self.by_step.items()
            if wanted is None or key[0] in wanted
        )


async def due_times(stack: Stack, leads: list[int], step: int = 1) -> dict[int, float]:
    rows = await stack.pool.fetch(
        "SELECT lead_id, extract(epoch FROM due_at) AS due FROM scheduled_reminders "
        "WHERE lead_id = ANY($1::bigint[]) AND step_id = $2",
        leads,
        step,
    )
    return {r["lead_id"]: float(r["due"]) for r in rows if r["due"] is not None}


# ---------------------------------------------------------------- the replaced design


def poller_lateness(
    due: list[float], period: float, rate: float = SEND_LIMIT, phases: int = 100
) -> list[float]:
    """Lateness of a poller over scheduled_reminders, simulated over the same due times.

    Every `period` seconds it selects the rows due by then and sends them oldest first
    at the same Telegram limit; each send otherwise costs nothing (favourable to it).
    The tick's phase is unknown, so lateness is pooled over `phases` evenly spaced ones.
    """
    due = sorted(due)
    out: list[float] = []
    for k in range(phases):
        tick = due[0] + period * k / phases  # the first tick at or after the first due time
        free_at = tick
        i = 0
        while i < len(due):
            if due[i] > tick:  # skip idle ticks
                tick += period * math.ceil((due[i] - tick) / period)
            j = bisect.bisect_right(due, tick)
            t = max(free_at, tick)
            for d in due[i:j]:
                out.append(t - d)
                t += 1 / rate
            free_at, i = t, j
            tick += period
    return out


# ---------------------------------------------------------------- taps


@dataclass
class Tap:
    kind: str
    query_id: str
    at: float


_OK = re.compile("Marked done|Paused|Resumed")  # the answers of a tap that did its work


class Tapper:
    """Owners tapping buttons through the real bot, at a steady rate.

    Every reminder of `answer_leads` is answered ✅ Done half a second after it arrives;
    the rest of the rate is ⏸ Pause / ▶️ Resume on sleeping plans (each plan toggles), so
    every tap changes a plan's state through its workflow."""

    def __init__(
        self, stack: Stack, deliveries: Deliveries, answer_leads: set[int],
        toggles: list[tuple[int, int]], rate: float,
    ) -> None:  # fmt: skip
        self.stack = stack
        self.deliveries = deliveries
        self.answer_leads = answer_leads
        self.toggles = toggles  # (lead, owner)
        self.paused: set[int] = set()
        self.rate = rate
        self.taps: list[Tap] = []
        self._queue: list[tuple[float, int, tuple[int, int, int]]] = []
        self._next_toggle = 0
        self._last_message: dict[int, int] = {}
        self.last_toggle: dict[int, str] = {}  # lead → its latest Pause/Resume query id

    def _collect(self) -> None:
        for key, call in self.deliveries.scan():
            chat = int(call.params["chat_id"])
            self._last_message[chat] = int(call.result["message_id"])
            if key[0] in self.answer_leads and len(self.deliveries.by_step[key]) == 1:
                self._queue.append((call.at + 0.5, chat, key))

    def _tap_one(self) -> None:
        tg = self.stack.telegram
        now = time.time()
        if self._queue and self._queue[0][0] <= now:
            _, chat, (lead, version, step) = self._queue.pop(0)
            message = self._last_message_for(chat, lead, version, step)
            data = StepCallback(act=StepAct.DONE, lead_id=lead, version=version, step_id=step)
            self.taps.append(Tap("done", tg.press(chat, message, data.pack()), now))
            return
        if not self.toggles:
            return
        lead, owner = self.toggles[self._next_toggle % len(self.toggles)]
        self._next_toggle += 1
        last = self.last_toggle.get(lead)
        if last is not None and self._changed_nothing(last):
            self.paused.symmetric_difference_update({lead})  # so the plan is as it was
        act = LeadAct.RESUME if lead in self.paused else LeadAct.PAUSE
        self.paused.symmetric_difference_update({lead})
        if owner not in tg.chats:
            tg.add_user(owner)
        message = self._last_message.get(owner, 1)
        packed = LeadCallback(act=act, lead_id=lead).pack()
        self.last_toggle[lead] = tg.press(owner, message, packed)
        self.taps.append(Tap(act.name.lower(), self.last_toggle[lead], now))

    def _changed_nothing(self, query_id: str) -> bool:
        """The tap was answered, and not as done (refused: very busy, wrong state)."""
        answer = self.stack.telegram.callback_queries[query_id].answer
        return answer is not None and not _OK.search(answer.text or "")

    def _last_message_for(self, chat: int, lead: int, version: int, step: int) -> int:
        for call in reversed(self.deliveries.by_step.get((lead, version, step), [])):
            return int(call.result["message_id"])
        return self._last_message.get(chat, 1)

    async def run(
        self, seconds: float | None = None, *, until: asyncio.Event | None = None
    ) -> None:
        """Tap at `rate` for `seconds` (or until `until` is set); answers only once the
        tap's reminder arrived, so an idle stream lowers the Done share, not the rate."""
        began = time.monotonic()
        n = 0
        while (seconds is None or time.monotonic() - began < seconds) and not (
            until and until.is_set()
        ):
            self._collect()
            if self.rate > 0:
                self._tap_one()
                n += 1
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            else:
                while self._queue and self._queue[0][0] <= time.time():
                    self._tap_one()
                await asyncio.sleep(0.05)

    async def settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.unanswered():  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    def unanswered(self) -> int:
        return sum(1 for t in self.taps if not self.stack.telegram.was_answered(t.query_id))

    def latencies(self) -> tuple[list[float], Counter[str]]:
        """Tap → answer seconds, and how the answers read (anything but success is counted)."""
        out = []
        texts: Counter[str] = Counter()
        for tap in self.taps:
            query = self.stack.telegram.callback_queries[tap.query_id]
            if query.answer is None:
                texts["unanswered"] += 1
                continue
            out.append(query.answer.at - query.at)
            text = query.answer.text or ""
            texts["ok" if _OK.search(text) else text[:40]] += 1
        return out, texts


async def taps_alone(
    stack: Stack, report: Report, g: str, after: Tapper, seconds: float, cached: int | None = None
) -> Tapper:
    """The same taps with nothing else due: tells the bot's own path from a machine that
    the stream and the taps together fill (Pause / Resume, continuing `after`'s toggles).

    `cached`: toggle only that many plans, so after its first tap each plan is in the
    worker's cache; otherwise the toggles cycle through more plans than the cache holds
    and every tap replays its plan's history first."""
    toggles = after.toggles[:cached] if cached else after.toggles
    alone = Tapper(stack, after.deliveries, set(), toggles, rate=after.rate)
    alone.paused, alone._next_toggle = set(after.paused), 0 if cached else after._next_toggle
    alone.last_toggle = dict(after.last_toggle)
    parts0, began = stack.cpu(), time.monotonic()
    await alone.run(seconds=seconds)
    await alone.settle(60)
    elapsed = time.monotonic() - began
    parts = stack.cpu_since(parts0)
    taps, answers = alone.latencies()
    t95 = pct(taps, 95)
    which = f"the same {len(toggles)} plans" if cached else f"{len(toggles)} plans in turn"
    report.add(
        g, f"button tap → answered, p50 / p95, taps alone{', plans in the cache' if cached else ''}",
        f"{ms(pct(taps, 50))} / {ms(t95)}", "p95 ≤ 250 ms", t95 <= 0.25,
        f"{len(alone.taps)} Pause/Resume taps at {after.rate:.0f}/s on {which}, no reminders "
        f"due; answers: {dict(answers)}; CPU per tap: {cpu_per(parts, len(alone.taps))} "
        f"({sum(parts.values()) / elapsed:.2f} of 2 cores)",
    )  # fmt: skip
    return alone


# ---------------------------------------------------------------- histories


def count_history(history: WorkflowHistory) -> dict[str, int]:
    """Workflow tasks and Temporal Cloud Actions in one history (docs.temporal.io/cloud/actions).

    Actions: workflow start, timer started, activity scheduled (+ each retry), the local
    activities of one workflow task (one Action together), search-attribute upsert,
    update accepted, signal. Not in a history, so not counted: rejected updates,
    queries, activity heartbeats that reached the server."""
    c: Counter[str] = Counter()
    markers_in_task = False
    for ev in history.events:
        t = ev.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            c["tasks"] += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            c["task_timeouts"] += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            c["task_failures"] += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            markers_in_task = False
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            c["actions"] += 1
        elif t == EventType.EVENT_TYPE_TIMER_STARTED:
            c["actions"] += 1
            c["timers"] += 1
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            c["actions"] += 1
            c["activities"] += 1
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries = max(0, ev.activity_task_started_event_attributes.attempt - 1)
            c["actions"] += retries
            c["activity_retries"] += retries
        elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
            c["local_activities"] += 1
            if not markers_in_task:
                markers_in_task = True
                c["actions"] += 1
        elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            c["actions"] += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            c["actions"] += 1
            c["updates"] += 1
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            c["actions"] += 1
    return dict(c)


def tasks_per_reminder(history: WorkflowHistory) -> list[int]:
    """Workflow tasks each reminder took: from its timer firing through the task that
    took the send's result (the hot path: one task to schedule, one to record)."""
    out = []
    counting = False
    tasks = 0
    for ev in history.events:
        t = ev.event_type
        if t == EventType.EVENT_TYPE_TIMER_FIRED:
            counting, tasks = True, 0
        elif counting and t == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            tasks += 1
        elif counting and t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            counting = False
            out.append(tasks + 1)  # the task that records the result
    return out


def reminder_path(history: WorkflowHistory) -> dict[str, float] | None:
    """Where a first reminder's time went, from its history's event times (seconds)."""
    marks: dict[str, float] = {}
    for ev in history.events:
        t = ev.event_type
        at = ev.event_time.ToDatetime().timestamp()
        if t == EventType.EVENT_TYPE_TIMER_FIRED and "fired" not in marks:
            marks["fired"] = at
        elif "fired" in marks and "scheduled" not in marks:
            if t == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                marks.setdefault("task_started", at)
            elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                marks.setdefault("task_completed", at)
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                marks["scheduled"] = at
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and "scheduled" in marks:
            marks.setdefault("activity_started", at)
    need = ("fired", "task_started", "task_completed", "scheduled", "activity_started")
    return marks if all(k in marks for k in need) else None


def chat_followers(stack: Stack, deliveries: Deliveries, leads: set[int]) -> int:
    """How many of these leads' first reminders reached Telegram within 1.7 s (the chat's
    spacing and a margin) of an earlier message to the same chat."""
    last: dict[Any, float] = {}
    found = 0
    wanted = {id(deliveries.by_step[(lead, 1, 1)][0]) for lead in leads}
    for call in stack.telegram.calls("sendMessage", ok=True):
        chat = call.params.get("chat_id")
        if id(call) in wanted and chat in last and call.at - last[chat] < 1.7:
            found += 1
        last[chat] = call.at
    return found


def lateness_legs(
    history: WorkflowHistory, due: float | None, sent: list[Call] | None
) -> dict[str, float] | None:
    """A first reminder's lateness split into its legs (seconds), or None if unsent."""
    marks = reminder_path(history)
    if not marks or due is None or not sent:
        return None
    return {
        "due→timer fired": marks["fired"] - due,
        "fired→task started": marks["task_started"] - marks["fired"],
        "task run": marks["task_completed"] - marks["task_started"],
        "send scheduled→started": marks["activity_started"] - marks["scheduled"],
        "send started→Telegram": sent[0].at - marks["activity_started"],
    }


async def histories(stack: Stack, leads: list[int]) -> list[WorkflowHistory]:
    return [await plan_handle(stack.client, lead).fetch_history() for lead in leads]


def task_trouble(stack: Stack) -> dict[str, int]:
    """Signs of a worker taking more than it can finish, from the worker logs."""
    text = "".join(w.log_text() for w in stack.all_workers)
    return {
        "deadlock/slow-task warnings": text.count("Workflow task duration exceeded")
        + text.count("deadlock"),
        "task not found on completion": text.count("not found when completing")
        + text.count("not found on completion"),
    }


# ---------------------------------------------------------------- row group: scale


async def owners_for(stack: Stack, count: int, base: int) -> list[int]:
    owners = [base + i for i in range(count)]
    for o in owners:
        stack.telegram.add_user(o)
    return owners


async def scale(stack: Stack, report: Report, *, plans: int, stream_rate: float,
                stream_seconds: float, tap_rate: float, lead_time: int,
                lifecycle_plans: int, lifecycle_steps: int = 5) -> None:  # fmt: skip
    """Enrolment, RSS at N, lateness with N sleeping plans + a stream, taps, histories."""
    g = "scale"
    worker = stack.workers[0]
    owners = await owners_for(stack, max(1, plans // 10), 100_000)
    # --- enrolment: N sleeping plans, bulk.
    print(f"[{g}] enrolling {plans} sleeping plans (load {load_average()})", flush=True)
    leads = await create_leads(stack, [owners[i % len(owners)] for i in range(plans)], "Sleeper ")
    owner_of = {lead: owners[i % len(owners)] for i, lead in enumerate(leads)}
    e = await enrol(stack, leads, owner_of, sleeping_steps(), 86_400)
    report.add(g, "enrolment: start_plan accepted", f"{e.accept_rate:.0f} plans/s",
               note=f"{plans} plans in {e.accepted_s:.1f} s")  # fmt: skip
    report.add(
        g, "enrolment: started and mirrored (bot path)", f"{e.live_rate:.1f} plans/s",
        "≥ 200/s", e.live_rate >= 200,
        f"{plans} plans live in {e.live_s:.1f} s; CPU per plan: {e.cpu_per_plan()}; "
        f"load {load_average()}",
    )  # fmt: skip
    await asyncio.sleep(3)
    rss, _ = rss_mib(worker.pid)
    others = [f"{rss_mib(w.pid)[0]:.0f} MiB" for w in stack.workers[1:]]
    report.add(g, f"worker RSS, {plans} sleeping plans", f"{rss:.0f} MiB", "≤ 400 MB", rss <= 400,
               f"the send worker process: {', '.join(others)}" if others else "")  # fmt: skip

    # --- lifecycle sample: whole plans answered Done, for tasks/actions per plan.
    deliveries = Deliveries(stack)
    deliveries.scan()
    life_owners = await owners_for(stack, lifecycle_plans, 300_000)
    life = await create_leads(stack, life_owners, "Lifecycle ")
    life_owner = dict(zip(life, life_owners, strict=True))
    life_steps = [
        PlanStep(step_id=i, action_type="email", description=f"Touch {i}", delay_days=0)
        for i in range(1, lifecycle_steps + 1)
    ]
    print(f"[{g}] lifecycle: {len(life)} plans × {lifecycle_steps} steps answered Done", flush=True)
    tapper = Tapper(stack, deliveries, set(life), [], rate=0)
    done = asyncio.Event()
    tapping = asyncio.create_task(tapper.run(until=done))
    await enrol(stack, life, life_owner, life_steps, 60)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        closed = await stack.pool.fetchval(
            "SELECT count(*) FROM scheduled_reminders WHERE lead_id = ANY($1::bigint[]) "
            "AND status = 'completed'",
            life,
        )
        if closed >= lifecycle_steps * len(life):
            break
        await asyncio.sleep(0.5)
    done.set()
    await tapping
    await asyncio.sleep(1.0)

    # --- lateness: a stream of reminders falling due at `stream_rate`, with taps.
    n_stream = max(1, int(stream_rate * stream_seconds))
    stream_owners = await owners_for(stack, max(1, n_stream // 2), 400_000)
    stream = await create_leads(
        stack, [stream_owners[i % len(stream_owners)] for i in range(n_stream)], "Stream "
    )
    stream_owner = {lead: stream_owners[i % len(stream_owners)] for i, lead in enumerate(stream)}
    print(
        f"[{g}] stream: {n_stream} plans started at {stream_rate}/s, each due {lead_time} s after "
        f"its start; {tap_rate:.0f} taps/s while they fall due (load {load_average()})",
        flush=True,
    )
    stream_began = time.time()
    await enrol(stack, stream, stream_owner, one_step(), lead_time, per_second=stream_rate)
    toggles = [
        (lead, owner_of[lead]) for lead in random.Random(9).sample(leads, min(len(leads), 2000))
    ]
    tapper = Tapper(stack, deliveries, set(stream), toggles, rate=tap_rate)
    # The first half of the stream falls due with no taps, the second half with taps at
    # `tap_rate`; taps stop when the stream ends (the rest only drains).
    due_start = stream_began + lead_time
    await asyncio.sleep(max(0.0, due_start - time.time()))
    t0 = time.monotonic()
    parts0 = stack.cpu()
    load_during = []
    all_sent = asyncio.Event()

    async def watch() -> None:
        deadline = time.monotonic() + stream_seconds + 600
        while not all_sent.is_set() and time.monotonic() < deadline:
            load_during.append(load_average().split()[0])
            tapper._collect()
            sent = sum(1 for lead in stream if (lead, 1, 1) in deliveries.by_step)
            if sent >= n_stream:
                break
            await asyncio.sleep(0.5)
        all_sent.set()

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(max(0.0, due_start + stream_seconds / 2 - time.time()))
    taps_from = time.time()
    await tapper.run(seconds=stream_seconds / 2)
    tapper_until = time.time()
    await watcher
    elapsed = time.monotonic() - t0
    parts = stack.cpu_since(parts0)
    busy = parts["worker"] / elapsed  # (every worker process)
    await tapper.settle(60)
    due = await due_times(stack, stream)
    sent_late = {
        lead: deliveries.by_step[(lead, 1, 1)][0].at - due[lead]
        for lead in stream
        if (lead, 1, 1) in deliveries.by_step and lead in due
    }
    late = list(sent_late.values())
    quiet = [v for lead, v in sent_late.items() if due[lead] < taps_from]
    tapped = [v for lead, v in sent_late.items() if due[lead] >= taps_from]
    missing = n_stream - len(late)
    for label, values in (("no taps", quiet), (f"{tap_rate:.0f} taps/s", tapped)):
        if not values:
            continue
        p50, p99, worst = pct(values, 50), pct(values, 99), max(values)
        report.add(
            g, f"reminder lateness p50 / p99 / max, {label} (event-driven)",
            f"{ms(p50)} / {ms(p99)} / {ms(worst)}", "≤ 100 ms / ≤ 500 ms",
            p50 <= 0.1 and p99 <= 0.5,
            f"{len(values)} reminders due at {stream_rate}/s next to {plans} sleeping plans",
        )  # fmt: skip
    p99 = pct(late, 99)
    report.add(
        g, "stream: work per second and its CPU",
        f"{(len(late) + len(tapper.taps)) / elapsed:.1f} reminders+taps/s",
        note=f"{len(late)} reminders + {len(tapper.taps)} taps in {elapsed:.0f} s; {missing} not "
        f"delivered; worker CPU {busy:.0%} of a core; CPU per reminder or tap: "
        + cpu_per(parts, len(late) + len(tapper.taps))
        + f"; load 1-min {min(load_during, default='-')}–{max(load_during, default='-')}",
    )  # fmt: skip
    for period, label, ratio in ((900.0, "15-min", 1000), (60.0, "60-s", 100)):
        polled = poller_lateness(list(due.values()), period)
        pp50, pp99, pmax = pct(polled, 50), pct(polled, 99), max(polled)
        report.add(
            g, f"the same due times, {label} poller p50 / p99 / max",
            f"{ms(pp50)} / {ms(pp99)} / {ms(pmax)}  (p99 ratio {pp99 / max(p99, 1e-3):,.0f}×)",
            f"p99 ratio ≥ {ratio}×", pp99 / max(p99, 1e-3) >= ratio,
            "simulated over the run's own due times, 100 tick phases, sends at 25/s",
        )  # fmt: skip
    taps, answers = tapper.latencies()
    t95 = pct(taps, 95)
    report.add(
        g, "button tap → answered and state changed, p50 / p95",
        f"{ms(pct(taps, 50))} / {ms(t95)}", "p95 ≤ 250 ms", t95 <= 0.25,
        f"{len(tapper.taps)} taps at {tap_rate:.0f}/s through the bot process "
        f"({Counter(t.kind for t in tapper.taps)}); answers: {dict(answers)}",
    )  # fmt: skip
    alone = await taps_alone(stack, report, g, tapper, stream_seconds / 4)
    await taps_alone(stack, report, g, alone, stream_seconds / 4, cached=HOT_TOGGLES)
    # --- histories.
    hist = await histories(stack, life + random.Random(1).sample(stream, min(len(stream), 200)))
    per_plan = [count_history(h) for h in hist[: len(life)]]
    per_reminder = [n for h in hist for n in tasks_per_reminder(h)]
    stream_counts = [count_history(h) for h in hist[len(life) :]]
    tasks_rem = statistics.mean(per_reminder) if per_reminder else float("nan")
    report.add(
        g, "workflow tasks per reminder (mean / max)",
        f"{tasks_rem:.2f} / {max(per_reminder, default=0)}", "≤ 2", tasks_rem <= 2,
        f"{len(per_reminder)} reminders in {len(hist)} histories",
    )  # fmt: skip
    plan_tasks = statistics.mean(c.get("tasks", 0) for c in per_plan)
    plan_actions = statistics.mean(c.get("actions", 0) for c in per_plan)
    report.add(
        g, f"per completed plan: workflow tasks / Actions ({lifecycle_steps} steps, all answered)",
        f"{plan_tasks:.1f} / {plan_actions:.1f}",
        note=f"{len(per_plan)} plans; {dict(sum((Counter(c) for c in per_plan), Counter()))}",
    )  # fmt: skip
    one = statistics.mean(c.get("actions", 0) for c in stream_counts)
    per_step = (plan_actions - one) / max(1, lifecycle_steps - 1)
    month = (one + 4 * per_step) * 10_000  # a 5-step plan per lead
    report.add(
        g, "10,000 leads/month on Temporal Cloud (a 5-step plan each, all answered)",
        f"{month / 1e6:.2f} M Actions ≈ ${month / 1e6 * CLOUD_USD_PER_MILLION_ACTIONS:,.0f}/month",
        note=f"$50 per million Actions (pay-as-you-go, first 5M, docs.temporal.io/cloud/pricing); "
        f"a 1-step plan {one:.1f} Actions, each further answered step {per_step:.1f}",
    )  # fmt: skip

    def legs_of(h: WorkflowHistory) -> dict[str, float] | None:
        lead = int(h.workflow_id.removeprefix("lead-"))
        return lateness_legs(h, due.get(lead), deliveries.by_step.get((lead, 1, 1)))

    paths: dict[str, list[dict[str, float]]] = {"no taps": [], f"{tap_rate:.0f} taps/s": []}
    for h in hist[len(life) :]:
        if legs := legs_of(h):
            lead = int(h.workflow_id.removeprefix("lead-"))
            paths[f"{tap_rate:.0f} taps/s" if due[lead] >= taps_from else "no taps"].append(legs)
    # The tail: the reminders past the lateness target (the latest 60), from their histories.
    tail = sorted((v, lead) for lead, v in sent_late.items() if v > 0.5)[-60:]
    paths["over 500 ms late"] = [
        legs for h in await histories(stack, [lead for _, lead in tail]) if (legs := legs_of(h))
    ]
    for label, sample in paths.items():
        if not sample:
            continue
        report.add(
            g, f"where a reminder's lateness goes (median of each leg), {label}",
            ", ".join(f"{k} {ms(statistics.median(p[k] for p in sample))}" for k in sample[0]),
            note=f"from {len(sample)} histories' event times and the emulator's receipt",
        )  # fmt: skip
    late_keys = {lead for lead, v in sent_late.items() if v > 0.5}
    report.add(
        g, "reminders over 500 ms late, and of them: right after another message to their chat",
        f"{len(late_keys)}; {chat_followers(stack, deliveries, late_keys)}",
        note="another sendMessage to the same chat ended within 1.7 s before it (per-chat pacing)",
    )  # fmt: skip
    ledger = await stack.pool.fetch(
        """
        SELECT DISTINCT ON (lead_id)
               lead_id, attempts, extract(epoch FROM slot_at)::float8 AS slot
        FROM telegram_deliveries
        WHERE lead_id = ANY($1::bigint[]) AND plan_version = 1 AND step_id = 1
        ORDER BY lead_id, id
        """,
        list(late_keys),
    )  # (each one-step plan's first delivery of its step: the reminder measured)
    if ledger:
        report.add(
            g, "the late ones in the delivery ledger: retried; slot − due, p50 / max",
            f"{sum(r['attempts'] > 1 for r in ledger)} of {len(ledger)}; "
            f"{ms(statistics.median(r['slot'] - due[r['lead_id']] for r in ledger if r['slot']))}"
            f" / {ms(max((r['slot'] - due[r['lead_id']] for r in ledger if r['slot']), default=0))}",
            note="attempts > 1: a send stepped back (chat or window busy, lease) and Temporal "
            "retried it; slot: the chat's send slot it was given",
        )  # fmt: skip
    report.add(
        g, "Telegram calls while the taps ran (per second)",
        ", ".join(
            f"{method} {n / max(1e-3, tapper_until - taps_from):.1f}"
            for method, n in Counter(
                c.method for c in stack.telegram.calls() if taps_from <= c.at < tapper_until
            ).most_common(6)
        ),
        note="what shares the bot-wide limit (sendMessage) with the reminders",
    )  # fmt: skip
    trouble = Counter[str]()
    for c in [*per_plan, *stream_counts]:
        trouble.update({k: v for k, v in c.items() if k in ("task_timeouts", "task_failures")})
    report.add(g, "workflow task timeouts / failures in those histories",
               f"{trouble['task_timeouts']} / {trouble['task_failures']}", "0", not trouble)  # fmt: skip


# ---------------------------------------------------------------- row group: catch-up


async def calibrate(stack: Stack, plans: int, base: int) -> float:
    """Plans/s this stack enrols right now (sleeping plans), to size the lead times."""
    owners = await owners_for(stack, max(1, plans // 10), base)
    leads = await create_leads(stack, [owners[i % len(owners)] for i in range(plans)], "Cal ")
    owner_of = {lead: owners[i % len(owners)] for i, lead in enumerate(leads)}
    return (await enrol(stack, leads, owner_of, sleeping_steps(), 86_400)).live_rate


async def catchup(stack: Stack, report: Report, *, plans: int) -> None:
    """Reminders fall due while no worker runs; then the worker comes back."""
    g = "catch-up"
    rate = await calibrate(stack, max(20, min(500, plans // 10)), 450_000)
    # Every plan must be live (and the worker stopped) before the first falls due.
    lead_time = int(10 + 1.5 * plans / rate)
    owners = await owners_for(stack, max(1, plans // 5), 500_000)
    leads = await create_leads(stack, [owners[i % len(owners)] for i in range(plans)], "Outage ")
    owner_of = {lead: owners[i % len(owners)] for i, lead in enumerate(leads)}
    print(f"[{g}] enrolling {plans} plans due {lead_time} s after start (load {load_average()})",
          flush=True)  # fmt: skip
    began = time.time()
    e = await enrol(stack, leads, owner_of, one_step(), lead_time)
    for w in list(stack.workers):
        await stack.stop_worker(w)
    stopped = time.time()
    due = await due_times(stack, leads)
    last_due = max(due.values())
    print(f"[{g}] worker stopped {stopped - began:.0f} s after the first start; "
          f"reminders due until +{last_due - began:.0f} s", flush=True)  # fmt: skip
    await asyncio.sleep(max(0.0, last_due + 2 - time.time()))
    deliveries = Deliveries(stack)
    deliveries.scan()
    before = {k for k in deliveries.by_step if k[0] in owner_of}
    overdue = [lead for lead in leads if (lead, 1, 1) not in before and due[lead] > stopped - 1]
    calls_before = len(stack.telegram._calls)
    restart = time.time()
    worker = await stack.start_worker()
    ready = time.time()
    cpu0 = cpu_seconds(worker.pid)
    parts0 = stack.cpu()
    deadline = time.monotonic() + max(120, 4 * plans / SEND_LIMIT)
    while time.monotonic() < deadline:
        deliveries.scan()
        if all((lead, 1, 1) in deliveries.by_step for lead in overdue):
            break
        await asyncio.sleep(0.5)
    end = time.time()
    busy = (cpu_seconds(worker.pid) - cpu0) / max(1e-3, end - ready)
    parts = stack.cpu_since(parts0)
    sent = sorted(
        (deliveries.by_step[(lead, 1, 1)][0].at, due[lead])
        for lead in overdue
        if (lead, 1, 1) in deliveries.by_step
    )
    times = [s for s, _ in sent]
    lo, hi = int(len(times) * 0.1), max(int(len(times) * 0.9) - 1, 0)
    sustained = (hi - lo) / max(1e-3, times[hi] - times[lo]) if hi > lo else float("nan")
    overall = len(times) / max(1e-3, times[-1] - restart) if times else 0.0
    new_calls = [c for c in stack.telegram._calls[calls_before:] if c.method == "sendMessage"]
    too_many = sum(1 for c in new_calls if c.status == 429)
    peak = _peak([c.at for c in new_calls if c.ok])
    # Oldest first: rank correlation of due order and send order, and how far any
    # reminder was overtaken by ones due later.
    dues_in_send_order = [d for _, d in sent]
    rho = _spearman(dues_in_send_order)
    overtaken = _overtaken(dues_in_send_order)
    dups = deliveries.duplicates(overdue)
    report.add(g, "reminders due while no worker ran", f"{len(overdue)}",
               note=f"enrolled at {e.live_rate:.0f}/s; outage {restart - stopped:.0f} s; "
                    f"worker back to polling in {ready - restart:.1f} s")  # fmt: skip
    report.add(
        g, "catch-up: sustained / overall send rate",
        f"{sustained:.1f} / {overall:.1f} msg/s", "≥ 24 msg/s at a 25/s limit",
        sustained >= 24,
        f"{len(times)} sent in {times[-1] - restart if times else 0:.0f} s after the restart; "
        f"peak {peak} in 1 s; worker CPU {busy:.0%} of a core; CPU per reminder: "
        + cpu_per(parts, len(times))
        + f"; load {load_average()}",
    )  # fmt: skip
    report.add(g, "catch-up: 429s (bot-wide + per chat) / duplicates", f"{too_many} / {dups}",
               "0 / 0", too_many == 0 and dups == 0)  # fmt: skip
    report.add(
        g, "catch-up: oldest due first",
        f"Spearman ρ {rho:.3f}; overtaken by p50 {ms(pct(overtaken, 50))} / p99 "
        f"{ms(pct(overtaken, 99))}", "oldest first", rho >= 0.95,
        "ρ = rank correlation of due order and send order; overtaken = how much later "
        "than a reminder the latest one sent before it was due",
    )  # fmt: skip
    lateness = [s - d for s, d in sent]
    report.add(g, "catch-up: lateness p50 / max (from due, outage included)",
               f"{ms(pct(lateness, 50))} / {ms(max(lateness, default=0))}")  # fmt: skip
    trouble = task_trouble(stack)
    report.add(
        g, "worker log: slow-task warnings / tasks not found",
        f"{trouble['deadlock/slow-task warnings']} / {trouble['task not found on completion']}",
        "0 / 0", not any(trouble.values()),
    )  # fmt: skip


def _peak(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _spearman(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 1.0
    ranks = {i: r for r, i in enumerate(sorted(range(n), key=values.__getitem__))}
    d2 = sum((i - ranks[i]) ** 2 for i in range(n))
    return 1 - 6 * d2 / (n * (n * n - 1))


def _overtaken(dues: list[float]) -> list[float]:
    """For each reminder in send order: how much later than it the latest reminder already
    sent was due (0 when none due later went first)."""
    latest = float("-inf")
    out = []
    for d in dues:
        out.append(max(0.0, latest - d))
        latest = max(latest, d)
    return out


# ---------------------------------------------------------------- row group: memory


async def memory(
    stack: Stack, report: Report, *, plans: int, factor: int = 5, fresh_worker: bool = True
) -> None:
    """Worker RSS with N, then factor×N sleeping plans (a fresh worker process unless quick)."""
    g = "memory"
    if fresh_worker:
        for w in list(stack.workers):
            await stack.stop_worker(w)
        await stack.start_worker()
    worker = stack.workers[0]
    owners = await owners_for(stack, max(1, plans // 10), 600_000)
    figures = []
    total = 0
    for target in (plans, plans * factor):
        add = target - total
        leads = await create_leads(stack, [owners[i % len(owners)] for i in range(add)], "Mem ")
        owner_of = {lead: owners[i % len(owners)] for i, lead in enumerate(leads)}
        e = await enrol(stack, leads, owner_of, sleeping_steps(), 86_400)
        total = target
        await asyncio.sleep(3)
        rss, peak = rss_mib(worker.pid)
        figures.append(rss)
        report.add(g, f"worker RSS, {target} sleeping plans (this group's)",
                   f"{rss:.0f} MiB (peak {peak:.0f})", "≤ 400 MB", rss <= 400,
                   f"enrolled at {e.live_rate:.0f}/s (CPU per plan: {e.cpu_per_plan()}); "
                   f"load {load_average()}")  # fmt: skip
    growth = figures[-1] - figures[0]
    report.add(g, f"RSS growth {plans} → {plans * factor} plans", f"{growth:+.0f} MiB",
               "flat (bounded by the workflow cache)", growth <= 0.1 * figures[0])  # fmt: skip


# ---------------------------------------------------------------- row group: scale-out


async def scaleout(stack: Stack, report: Report, *, plans: int, burst: int) -> None:
    """The same enrolment and reminder burst with one, then two worker processes."""
    g = "scale-out"
    # Whatever runs now first (two workers are started together at the beginning of `all`).
    for workers in (2, 1) if len(stack.workers) >= 2 else (1, 2):
        while len(stack.workers) < workers:
            await stack.start_worker()
        while len(stack.workers) > workers:
            await stack.stop_worker(stack.workers[-1])
        owners = await owners_for(stack, max(1, plans // 5), 700_000 + 100_000 * workers)
        leads = await create_leads(stack, [owners[i % len(owners)] for i in range(plans)], "Out ")
        owner_of = {lead: owners[i % len(owners)] for i, lead in enumerate(leads)}
        e = await enrol(stack, leads, owner_of, sleeping_steps(), 86_400)
        b_owners = await owners_for(stack, max(1, burst // 2), 900_000 + 10_000 * workers)
        b_leads = await create_leads(
            stack, [b_owners[i % len(b_owners)] for i in range(burst)], "Burst "
        )
        b_owner = {lead: b_owners[i % len(b_owners)] for i, lead in enumerate(b_leads)}
        deliveries = Deliveries(stack)
        deliveries.scan()
        calls_before = len(stack.telegram._calls)
        # Due one plan-day (`lead_time` s) after their start: live before the first is due.
        lead_time = int(10 + 1.5 * burst / e.live_rate)
        await enrol(stack, b_leads, b_owner, one_step(), lead_time)
        deadline = time.monotonic() + lead_time + max(120, 4 * burst / SEND_LIMIT)
        while time.monotonic() < deadline:
            deliveries.scan()
            if all((lead, 1, 1) in deliveries.by_step for lead in b_leads):
                break
            await asyncio.sleep(0.5)
        due = await due_times(stack, b_leads)
        sent = [deliveries.by_step[(lead, 1, 1)][0].at for lead in b_leads
                if (lead, 1, 1) in deliveries.by_step]  # fmt: skip
        late = [deliveries.by_step[(lead, 1, 1)][0].at - due[lead] for lead in b_leads
                if (lead, 1, 1) in deliveries.by_step]  # fmt: skip
        span = max(sent) - min(due.values()) if sent else float("nan")
        new_calls = [c for c in stack.telegram._calls[calls_before:] if c.method == "sendMessage"]
        too_many = sum(1 for c in new_calls if c.status == 429)
        peak = _peak([c.at for c in new_calls if c.ok])
        report.add(
            g, f"{workers} worker process{'es' if workers > 1 else ''}",
            f"enrolment {e.live_rate:.0f} plans/s; burst {len(sent)}/{burst} in {span:.1f} s "
            f"({len(sent) / span:.1f} msg/s); lateness p50 {ms(pct(late, 50))} p99 {ms(pct(late, 99))}",
            "sends within the one global limit", too_many == 0 and peak <= 2 * SEND_LIMIT,
            f"peak {peak} sends in 1 s, {too_many} × 429; {plans} plans enrolled; load {load_average()}",
        )  # fmt: skip
