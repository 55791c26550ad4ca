"""Telegram sends: reminders and notices, behind a delivery ledger.

Error mapping (SPEC §4): 429 → retry after exactly `retry_after`; 5xx and network
errors → raise as is, Temporal retries with backoff; 403 → non-retryable
"BotBlocked", the workflow marks the plan blocked; 400 → non-retryable "BadRequest".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

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
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.mirror import state_rows
from storage.activity_log import ActivityLogRepository
from storage.deliveries import DeliveryLedger
from storage.leads import LeadRepository
from storage.reminders import ReminderRepository
from telegram_ui import render
from workflows.models import (
    NoticeKind,
    NoticeRequest,
    ReminderKind,
    ReminderRequest,
    ReminderResult,
)


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


class TelegramActivities:
    """Holds the Bot and the pool; runs on its own task queue, rate-limited by the server."""

    def __init__(self, bot: Bot, pool: asyncpg.Pool) -> None:
        self._bot = bot
        self._pool = pool

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
    ) -> tuple[int, datetime, bool]:
        """Send unless the ledger shows this exact delivery already went out.

        Returns the message id, when it went out, and whether this call sent it.
        """
        ledger = DeliveryLedger(self._pool)
        delivery = await ledger.begin(delivery_key, chat_id, lead_id)
        if delivery.already_sent:
            assert delivery.message_id is not None
            return delivery.message_id, delivery.updated_at, False
        message = await deliver(
            lambda: self._bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, reply_markup=keyboard
            )
        )
        await ledger.complete(delivery_key, message.message_id)
        # The server's clock, not the host's: the attempt's start is when the message
        # went out (to within a request), and it agrees with workflow time in tests.
        return message.message_id, activity.info().started_time, True

    @activity.defn(name="send_reminder")
    async def send_reminder(self, req: ReminderRequest) -> ReminderResult:
        """Send the reminder, then mirror the plan (folded in: one activity per reminder)."""
        state, step = req.state, req.step
        position, total = state.position(step.step_id), len(state.steps)
        name, company = await self._lead_label(state.lead_id)
        text = render.reminder_text(name, company, step, position, total, req.kind)
        keyboard = render.reminder_keyboard(state.lead_id, state.plan_version, step)
        message_id, sent_at, fresh = await self._send_once(
            req.delivery_key, state.telegram_id, state.lead_id, text, keyboard
        )
        if fresh:
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
        return ReminderResult(message_id=message_id, sent_at=sent_at)

    @activity.defn(name="send_notice")
    async def send_notice(self, req: NoticeRequest) -> int:
        state = req.state
        name, company = await self._lead_label(state.lead_id)
        keyboard = (
            render.plan_ready_keyboard(state.lead_id, state.plan_version)
            if req.kind == NoticeKind.PLAN_READY
            else None
        )
        message_id, _, _ = await self._send_once(
            req.delivery_key,
            state.telegram_id,
            state.lead_id,
            render.notice_text(req, name, company),
            keyboard,
        )
        return message_id
