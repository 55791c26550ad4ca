"""Telegram sends: reminders and notices, behind a leased delivery ledger and per-chat pacing.

Error mapping (SPEC §4): 429 → retry after exactly `retry_after`; 5xx and network
errors → raise as is, Temporal retries with backoff; 403 → non-retryable
"BotBlocked", the workflow marks the plan blocked; 400 → non-retryable "BadRequest".

Delivery contract (what the workflow relies on):
- A reminder whose step was answered, skipped or cancelled, or whose plan was replaced,
  returns `ReminderResult(not_sent=STEP_CLOSED)`; for a closed (or deleted) lead
  `not_sent=LEAD_CLOSED`. Nothing is sent and the mirror is not written. A delivery that
  already went out (ledger row sent) is reported as sent even if the step closed since.
- While another attempt of the same delivery may still be in flight (its lease is live)
  the attempt raises a retryable, benign `ApplicationError(type="DeliveryLeased")` with
  `next_retry_delay` = the lease's remaining time; a chat's send slot further away than
  one attempt can wait raises benign "ChatPaced" with `next_retry_delay` ≈ the slot.
- A reminder the plan started a send lead early (`not_before`) takes its chat's send
  slot at once, for the due time (a message queued for the chat meanwhile goes after
  it), and its lease; it waits for the due time, then checks it is still wanted, so at
  the due time only that check and the claims stand before the HTTP call. The wait
  comes out of the slot-wait budget.
- The HTTP timeout (15 s) plus the longest in-attempt slot wait stays under the
  activity's 30-s start-to-close; the attempt heartbeats every 2 s (heartbeat timeout
  10 s), so a killed worker's send is retried in seconds, after the lease.
- The message id of a send whose ledger write failed (database down) travels to the
  next attempt in the heartbeat details, so that attempt records it instead of resending.

Stale buttons: after a reminder, the step's earlier messages lose their keyboards; a
reminder whose step was answered while it was being sent loses its own; an auto-snooze
notice clears the whole step (telegram_ui.stale_buttons). Best effort, never a failure.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup, Message
from temporalio import activity
from temporalio.common import Priority
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import metrics
from activities.mirror import state_rows
from storage.activity_log import ActivityLogRepository
from storage.deliveries import (
    DeliveryLedger,
    LeaseHeld,
    StepRef,
    Withdrawn,
    reminder_withdrawn,
    rows_revision,
)
from storage.leads import LeadRepository
from storage.pacing import ChatPacer, Sending
from storage.reminders import ReminderRepository
from telegram_ui import keyboards, texts
from telegram_ui.stale_buttons import clear_stale_buttons
from workflows.models import (
    MAX_SEND_LEAD_SECONDS,
    URGENT_PRIORITY_KEY,
    NoticeKind,
    NoticeRequest,
    NotSentReason,
    PlanStatus,
    ReminderKind,
    ReminderRequest,
    ReminderResult,
)

T = TypeVar("T")

# Seconds. The HTTP timeout must stay below the workflow's 30-s start-to-close, minus the
# longest slot wait inside one attempt, so an attempt always learns how its send ended.
REQUEST_TIMEOUT = 15
LEASE_MARGIN = 5.0
HEARTBEAT_EVERY = 2.0
MAX_SLOT_WAIT = 8.0
# Waiting for the chat's previous send right before ours, at most (inside the lease margin).
MAX_CLAIM_WAIT = 3.0
# Writing the ledger after a send: retry a lost database until this long into the attempt.
COMPLETE_DEADLINE = 26.0
# Removing stale buttons after a send (editMessageReplyMarkup): at most this long, so the
# attempt ends well inside its 30-s start-to-close whatever Telegram does.
CLEAR_BUDGET = 8.0
CLEAR_DEADLINE = 27.0

_DB_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


async def deliver(send: Callable[[], Awaitable[Message]]) -> Message:
    """Run one Bot API call, translating Telegram's answers into Temporal's retry language."""
    try:
        return await send()
    except TelegramRetryAfter as err:
        metrics.send_error("rate_limited")
        raise ApplicationError(
            f"Telegram rate limit, retry after {err.retry_after}s",
            type="RateLimited",
            next_retry_delay=timedelta(seconds=err.retry_after),
        ) from err
    except TelegramForbiddenError as err:
        metrics.send_error("blocked")
        raise ApplicationError(
            f"Telegram refused: {err.message}", type="BotBlocked", non_retryable=True
        ) from err
    except TelegramBadRequest as err:
        metrics.send_error("bad_request")
        raise ApplicationError(
            f"Telegram rejected the message: {err.message}", type="BadRequest", non_retryable=True
        ) from err
    except TelegramServerError:
        metrics.send_error("server")
        raise
    except (TelegramNetworkError, TimeoutError):
        metrics.send_error("network")
        raise


async def heartbeating(work: Awaitable[T], *details: Any, keep: bool = False) -> T:
    """Await `work`, heartbeating meanwhile, so Temporal can tell a slow send from a dead worker.

    If this attempt is cancelled, `work` is cancelled too, unless `keep` (the caller
    then owns the still-running task: a send Telegram may be completing)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if task in done:
                return task.result()
            activity.heartbeat(*details)
    finally:
        if not task.done() and not keep:
            task.cancel()


def deferrable(priority: Priority) -> bool:
    """A send the plan queued below the priority of someone waiting for it (a nudge, an
    informative notice: SEND_PRIORITY in workflows/models.py) leaves the bot-wide window's
    urgent share to reminders, and its chat to a message whose slot is imminent. Sends of
    plans that set no priority are urgent, as before."""
    return (priority.priority_key or 0) > URGENT_PRIORITY_KEY


def _waiting(kind: str, message: str, seconds: float) -> ApplicationError:
    """A retry that is part of normal operation: benign, so it is not logged as a failure."""
    return ApplicationError(
        message,
        type=kind,
        next_retry_delay=timedelta(seconds=max(0.5, seconds)),
        category=ApplicationErrorCategory.BENIGN,
    )


@dataclass(frozen=True)
class Sent:
    message_id: int
    sent_at: datetime
    # Whether this attempt (or the earlier one whose answer it carries) sent it.
    fresh: bool


@dataclass
class _Attempt:
    """One activity attempt's view of one delivery."""

    key: str
    attempt_id: str
    started_at: datetime
    t0: float
    details: list[Any] = field(default_factory=list)

    @classmethod
    def now(cls, key: str) -> _Attempt:
        info = activity.info()
        attempt_id = f"{info.workflow_id}/{info.activity_id}#{info.attempt}:{uuid.uuid4().hex[:8]}"
        return cls(key, attempt_id, info.started_time, asyncio.get_running_loop().time())

    def clock(self) -> datetime:
        """Temporal's clock (the attempt's start) plus what has elapsed since, which agrees
        with workflow time, also on the time-skipping test server; or the local clock
        when it is later. The server stamps the start when it hands the task out, and the
        task reaches this coroutine up to half a second later on a loaded machine
        (measured: p99 181 ms): counted from the stamp, a send would wait that much past
        its due time. (A local clock ahead of the server's would send early by the skew;
        NTP keeps it to milliseconds.)"""
        return max(self.started_at + timedelta(seconds=self.elapsed()), datetime.now(UTC))

    def elapsed(self) -> float:
        return self.loop_time() - self.t0

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    def carried(self) -> tuple[int, datetime] | None:
        """A send of this delivery by an earlier attempt that could not record it."""
        for item in activity.info().heartbeat_details:
            if isinstance(item, dict) and item.get("key") == self.key and item.get("message_id"):
                self.details = [item]
                return int(item["message_id"]), datetime.fromisoformat(item["sent_at"])
        return None


class TelegramActivities:
    """Holds the Bot and the pool; runs on its own task queue, rate-limited by the server."""

    def __init__(
        self,
        bot: Bot,
        pool: asyncpg.Pool,
        *,
        request_timeout: int = REQUEST_TIMEOUT,
        chat_spacing: float = 1.2,
        sends_per_second: float = 0,
        lease_margin: float = LEASE_MARGIN,
    ) -> None:
        self._bot = bot
        self._pool = pool
        self._request_timeout = request_timeout
        self._lease_seconds = request_timeout + lease_margin
        self._pacer = ChatPacer(pool, chat_spacing, sends_per_second)

    async def _lead_label(self, lead_id: int) -> tuple[str, str | None]:
        lead = await LeadRepository(self._pool).get(lead_id)
        return (lead.prospect_name, lead.prospect_company) if lead else (f"lead #{lead_id}", None)

    async def _send_once(
        self,
        delivery_key: str,
        chat_id: int,
        lead_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None,
        withdrawn: Callable[[], Awaitable[Withdrawn | None]] | None = None,
        step: StepRef | None = None,
        not_before: datetime | None = None,
    ) -> Sent | Withdrawn:
        """Send unless the ledger shows this exact delivery already went out, another
        attempt may be sending it, or (`withdrawn`) it is no longer wanted; not before
        `not_before` (Temporal's clock), which is waited for first."""
        ledger = DeliveryLedger(self._pool)
        attempt = _Attempt.now(delivery_key)
        carried = attempt.carried()
        if carried is not None:
            activity.heartbeat(*attempt.details)
            return await self._record(attempt, *carried)
        existing = await ledger.get(delivery_key)
        if existing is not None and existing.already_sent:
            assert existing.message_id is not None
            return Sent(existing.message_id, existing.sent_at or existing.updated_at, False)
        held = await ledger.lease_remaining(delivery_key, attempt.attempt_id)
        if held is not None:
            raise self._leased(held)
        lead = self._lead(not_before, attempt)
        due = attempt.loop_time() + lead
        if lead == 0 and withdrawn is not None and (reason := await withdrawn()) is not None:
            return reason  # (no ledger row for what was never wanted)
        await ledger.begin(delivery_key, chat_id, lead_id, step)
        # The chat's slot is taken now, for the due time if the plan woke ahead of it.
        wait = await self._pacer.slot_wait(chat_id, delivery_key, due - attempt.loop_time())
        if wait > MAX_SLOT_WAIT:
            metrics.send_waited("chat_paced")
            raise _waiting("ChatPaced", f"chat {chat_id} is paced; slot in {wait:.1f}s", wait - 2)
        # Waiting for the due time and the slot comes last, after the lease (which covers
        # it), so that once they come only the last check and the claims stand between
        # the reminder and Telegram. Deadlines, not durations: the queries on the way do
        # not push the send later.
        ready = max(due, attempt.loop_time() + wait)
        leased = await ledger.acquire(
            delivery_key, attempt.attempt_id, self._lease_seconds + ready - attempt.loop_time()
        )
        if isinstance(leased, LeaseHeld):
            raise self._leased(leased)
        if leased.already_sent:
            assert leased.message_id is not None
            return Sent(leased.message_id, leased.sent_at or leased.updated_at, False)
        if (left := ready - attempt.loop_time()) > 0:
            await heartbeating(asyncio.sleep(left))
        if withdrawn is not None and (reason := await withdrawn()) is not None:
            await ledger.release(delivery_key, attempt.attempt_id)
            return reason
        claim = await self._claim_chat(chat_id, delivery_key, attempt)
        sending = asyncio.ensure_future(
            self._paced(
                claim,
                deliver(
                    lambda: self._bot.send_message(
                        chat_id,
                        text,
                        parse_mode=ParseMode.HTML,
                        reply_markup=keyboard,
                        request_timeout=self._request_timeout,
                    )
                ),
            )
        )
        try:
            message = await heartbeating(sending, keep=True)
        except asyncio.CancelledError:
            # Temporal gave up on this attempt (timed out, or the plan ended), but Telegram
            # may be delivering right now: let the request finish (it is bounded by the
            # HTTP timeout) and record what it did, so no later attempt sends it again.
            await self._finish_abandoned(sending, attempt)
            raise
        except (ApplicationError, TelegramServerError):
            # Telegram answered: nothing went out, the next attempt need not wait.
            await ledger.release(delivery_key, attempt.attempt_id)
            raise
        # Network errors and timeouts keep the lease: the message may still land.
        return await self._record(attempt, message.message_id, attempt.clock())

    async def _finish_abandoned(self, sending: asyncio.Future[Message], attempt: _Attempt) -> None:
        try:
            message = await asyncio.wait_for(asyncio.shield(sending), self._request_timeout + 1)
            await DeliveryLedger(self._pool).complete(
                attempt.key, message.message_id, attempt.clock()
            )
        except BaseException:  # nothing went out, or we cannot know: the lease stays
            sending.cancel()

    @staticmethod
    def _lead(not_before: datetime | None, attempt: _Attempt) -> float:
        """Seconds until the due time of a send the plan started early (its send lead),
        which the send waits for. Bounded: the lead is at most MAX_SEND_LEAD_SECONDS, and
        the time is taken from `_Attempt.clock`, so it agrees with the plan's timers."""
        if not_before is None:
            return 0.0
        return max(0.0, min((not_before - attempt.clock()).total_seconds(), MAX_SEND_LEAD_SECONDS))

    async def _claim_chat(self, chat_id: int, delivery_key: str, attempt: _Attempt) -> Sending:
        """The last word on pacing, right before the HTTP call: a sender that fell behind
        its slot (a slow query, a busy loop) waits until the chat's previous send ended
        `spacing` ago and the bot-wide window has room. Bounded, so the lease still
        covers the HTTP timeout."""
        sending = await self._pacer.claim_send(
            chat_id,
            self._request_timeout + 1,
            MAX_CLAIM_WAIT,
            sleep=lambda seconds: heartbeating(asyncio.sleep(seconds)),
            deferrable=delivery_key if deferrable(activity.info().priority) else None,
        )
        if sending is None:
            await DeliveryLedger(self._pool).release(delivery_key, attempt.attempt_id)
            metrics.send_waited("chat_paced")
            raise _waiting("ChatPaced", f"chat {chat_id} or the bot is busy", 1.0)
        return sending

    async def _paced(self, sending: Sending, request: Awaitable[T]) -> T:
        """Run the claimed request and mark its end, however it ends (the mark is a
        courtesy to the next sender: a lost database leaves it to expire)."""
        try:
            return await request
        finally:
            try:
                await self._pacer.ended(sending)
            except _DB_DOWN:
                activity.logger.info(
                    "chat %s: send end not marked; its claim expires", sending.telegram_id
                )

    async def _record(self, attempt: _Attempt, message_id: int, sent_at: datetime) -> Sent:
        """Complete the ledger row; while the database is away, keep the message id in the
        heartbeat details so the next attempt records it instead of sending again."""
        attempt.details = [
            {"key": attempt.key, "message_id": message_id, "sent_at": sent_at.isoformat()}
        ]
        activity.heartbeat(*attempt.details)
        delay = 0.5
        while True:
            try:
                await DeliveryLedger(self._pool).complete(attempt.key, message_id, sent_at)
                return Sent(message_id, sent_at, True)
            except _DB_DOWN:
                if attempt.elapsed() + delay > COMPLETE_DEADLINE:
                    raise
            await heartbeating(asyncio.sleep(delay), *attempt.details)
            delay = min(delay * 2, 4.0)

    def _leased(self, held: LeaseHeld) -> ApplicationError:
        metrics.send_waited("leased")
        return _waiting(
            "DeliveryLeased",
            f"an earlier attempt ({held.attempt_id}) may still be sending; "
            f"lease ends in {held.remaining:.1f}s",
            held.remaining + 0.5,
        )

    @activity.defn(name="send_reminder")
    async def send_reminder(self, req: ReminderRequest) -> ReminderResult:
        """Send the reminder, then mirror the plan (folded in: one activity per reminder)."""
        t0 = asyncio.get_running_loop().time()
        state, step = req.state, req.step
        position, total = state.position(step.step_id), len(state.steps)
        name, company = await self._lead_label(state.lead_id)
        text = texts.reminder_text(name, company, step, position, total, req.kind)
        keyboard = keyboards.reminder_keyboard(state.lead_id, state.plan_version, step)

        async def withdrawn(revision: int | None = state.revision) -> Withdrawn | None:
            """Before the send: also withdrawn if the plan changed since it was decided;
            after it (`revision=None`): only if the step no longer awaits an answer."""
            return await reminder_withdrawn(
                self._pool, state.lead_id, state.plan_version, step.step_id, revision
            )

        ref = StepRef(state.lead_id, state.plan_version, step.step_id)
        outcome = await self._send_once(
            req.delivery_key,
            state.telegram_id,
            state.lead_id,
            text,
            keyboard,
            withdrawn,
            ref,
            req.not_before,
        )
        if isinstance(outcome, Withdrawn):
            metrics.reminder_withheld(outcome.value)
            activity.logger.info("reminder %s not sent: %s", req.delivery_key, outcome.value)
            return ReminderResult(
                not_sent=NotSentReason(outcome.value),
                rows_revision=await rows_revision(self._pool, state.lead_id),
            )
        message_id, sent_at = outcome.message_id, outcome.sent_at
        if outcome.fresh:
            late = sent_at - step.due_at if step.due_at and req.kind == ReminderKind.FIRST else None
            metrics.reminder_sent(req.kind.value, None if late is None else late.total_seconds())
        step.message_id, step.last_reminded_at = message_id, sent_at
        async with self._pool.acquire() as conn, conn.transaction():
            await ReminderRepository(conn).upsert_steps(state_rows(state))
            await ActivityLogRepository(conn).add(
                state.lead_id,
                state.telegram_id,
                "step_reminded",
                f"step {position} of {total}: reminder {step.reminder_count}",
                metadata={
                    "step_id": step.step_id,
                    "message_id": message_id,
                    "kind": req.kind.value,
                },
                dedupe_key=req.delivery_key,
            )
        # Only the newest reminder of an open step keeps its buttons; none of a step that
        # was answered while this one was being sent. The step's very first reminder has
        # no older messages: only the second check applies.
        older = req.kind == ReminderKind.NUDGE or step.snooze_count > 0
        await self._clear_buttons(
            ref, req.delivery_key if older else "", t0, lambda: withdrawn(None)
        )
        return ReminderResult(message_id=message_id, sent_at=sent_at)

    async def _clear_buttons(
        self,
        step: StepRef,
        before_key: str | None,
        t0: float,
        closed: Callable[[], Awaitable[Withdrawn | None]] | None = None,
    ) -> None:
        """Remove the keyboards of the step's messages older than `before_key` ("": none)
        or, if `closed` says the step no longer awaits an answer, of all of them; within
        what the attempt (started at loop time `t0`) has left. A failure leaves them for
        the next time."""
        left = CLEAR_DEADLINE - (asyncio.get_running_loop().time() - t0)
        if left < 1:
            return
        try:
            if closed is not None and await closed() is not None:
                before_key = None
            elif before_key == "":
                return
            await heartbeating(
                asyncio.wait_for(
                    clear_stale_buttons(self._bot, self._pool, step, before_key=before_key),
                    min(CLEAR_BUDGET, left),
                )
            )
        except Exception as err:  # cosmetic: the send and its record stand
            activity.logger.info("stale buttons of lead %s not cleared: %r", step.lead_id, err)

    @activity.defn(name="send_notice")
    async def send_notice(self, req: NoticeRequest) -> int:
        t0 = asyncio.get_running_loop().time()
        state = req.state
        name, company = await self._lead_label(state.lead_id)
        keyboard = None
        if req.kind == NoticeKind.PLAN_READY:
            keyboard = keyboards.plan_ready_keyboard(state.lead_id, state.plan_version)
        elif req.kind == NoticeKind.PLAN_FAILED:
            running = state.status != PlanStatus.AWAITING_APPROVAL
            keyboard = keyboards.plan_failed_keyboard(state.lead_id, state.plan_version, running)
        outcome = await self._send_once(
            req.delivery_key,
            state.telegram_id,
            state.lead_id,
            texts.notice_text(req, name, company),
            keyboard,
        )
        assert isinstance(outcome, Sent)  # notices are never withdrawn
        current = state.current
        if req.kind == NoticeKind.AUTO_SNOOZED and current is not None:
            # The unanswered reminders are settled: the notice says when the next one comes.
            step = StepRef(state.lead_id, state.plan_version, current.step_id)
            await self._clear_buttons(step, req.delivery_key, t0)
        return outcome.message_id
