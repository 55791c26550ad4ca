"""Older reminders of a step lose their buttons (issue 10).

Only the newest reminder of an open step should invite a tap: once a newer one is sent
(a nudge, the next round after a snooze) or the step is answered, the earlier messages'
inline keyboards are removed with editMessageReplyMarkup. Shared by the send activity
(after a reminder or an auto-snooze notice) and the bot (after a tap), which is why it
lives beside the keyboards.

Best effort by design: a tap on a message that kept its buttons is still refused by the
workflow ("Already handled"). Edits do not take the chat's send slot (Telegram's ~1/s
per chat is about new messages; the bot's edits after a tap don't either). What the
immediate clearing misses (a step closed outside the bot, an edit Telegram refused) the
telegram worker's periodic sweep clears.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
)

from storage.deliveries import DeliveryLedger, LiveButtons, StepRef

log = logging.getLogger("leadpilot.telegram")

EDIT_TIMEOUT = 5
SWEEP_LOCK = 0x1EAD_B077  # pg advisory lock key: one sweeper across worker processes
# A sweep after a bulk close may find hundreds of messages: edited at a pace that leaves
# Telegram's bot-wide limit to the reminders (a burst could draw 429s on their sends).
SWEEP_LIMIT = 50
SWEEP_EDITS_PER_SECOND = 5.0


async def clear_stale_buttons(
    bot: Bot,
    pool: asyncpg.Pool,
    step: StepRef,
    *,
    before_key: str | None = None,
    edited_message_id: int | None = None,
) -> int:
    """Remove the keyboards of the step's reminders (those recorded before `before_key`,
    or all of them); returns how many were edited.

    `edited_message_id` is a message the caller has just edited itself (the tapped one):
    it is only marked. A message that is unchanged, gone or too old to edit (400), or in
    a chat that blocked the bot (403), is marked too: it never will be edited. A 429, 5xx
    or network error stops here and leaves the rest to the sweep
    (`sweep_stale_buttons`), so a reminder is never held up by cosmetics.
    """
    ledger = DeliveryLedger(pool)
    return await _clear(bot, ledger, await ledger.live_buttons(step, before_key), edited_message_id)


async def sweep_stale_buttons(
    bot: Bot, pool: asyncpg.Pool, settled_seconds: float, limit: int = SWEEP_LIMIT
) -> int:
    """Clear what the paths above left: steps answered outside the bot (an operator's
    `temporal workflow update`, the Temporal UI), cancelled leads and replaced plans, and
    edits Telegram refused for a while. One sweeper at a time across processes; at most
    `limit` messages, `SWEEP_EDITS_PER_SECOND`."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
            return 0
        ledger = DeliveryLedger(conn)
        stale = await ledger.stale_buttons(settled_seconds, limit)
        return await _clear(bot, ledger, stale, pace=1 / SWEEP_EDITS_PER_SECOND)


async def sweep_forever(bot: Bot, pool: asyncpg.Pool, every: float) -> None:
    """Sweep every `every` seconds; a step is swept once its row has been still as long."""
    while True:
        await asyncio.sleep(every)
        try:
            if cleared := await sweep_stale_buttons(bot, pool, settled_seconds=every):
                log.info("cleared the buttons of %d answered reminders", cleared)
        except Exception as err:  # a chore: the next sweep tries again
            log.warning("stale buttons not swept: %r", err)


async def _clear(
    bot: Bot,
    ledger: DeliveryLedger,
    messages: list[LiveButtons],
    edited_message_id: int | None = None,
    pace: float = 0.0,
) -> int:
    edited = calls = 0
    for msg in messages:
        if msg.message_id != edited_message_id:
            if calls and pace:
                await asyncio.sleep(pace)
            calls += 1
            try:
                await bot.edit_message_reply_markup(
                    chat_id=msg.telegram_id,
                    message_id=msg.message_id,
                    reply_markup=None,
                    request_timeout=EDIT_TIMEOUT,
                )
                edited += 1
            except (TelegramBadRequest, TelegramForbiddenError) as err:
                # not modified, not found, can't be edited; the bot blocked, the chat gone
                log.info("buttons of message %s stay: %s", msg.message_id, err.message)
            except (TelegramAPIError, TelegramNetworkError, TimeoutError) as err:
                log.info("clearing buttons of message %s left for later: %s", msg.message_id, err)
                break
        await ledger.buttons_cleared(msg.delivery_key)
    return edited
