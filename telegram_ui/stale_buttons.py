"""Older reminders of a step lose their buttons (issue 10).

Only the newest reminder of an open step should invite a tap: once a newer one is sent
(a nudge, the next round after a snooze) or the step is answered, the earlier messages'
inline keyboards are removed with editMessageReplyMarkup. Shared by the send activity
(after a reminder or an auto-snooze notice) and the bot (after a tap), which is why it
lives beside the keyboards.

Best effort by design: a tap on a message that kept its buttons is still refused by the
workflow ("Already handled"). Edits do not take the chat's send slot (Telegram's ~1/s
per chat is about new messages; the bot's edits after a tap don't either).
"""

from __future__ import annotations

import logging

import asyncpg
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramNetworkError

from storage.deliveries import DeliveryLedger, StepRef

log = logging.getLogger("leadpilot.telegram")

EDIT_TIMEOUT = 5


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
    it is only marked. A message that is unchanged, gone or too old to edit (400) is
    marked too; a 429, 403, 5xx or network error stops here and leaves the rest for the
    next time, so a reminder is never held up by cosmetics.
    """
    ledger = DeliveryLedger(pool)
    edited = 0
    for msg in await ledger.live_buttons(step, before_key):
        if msg.message_id != edited_message_id:
            try:
                await bot.edit_message_reply_markup(
                    chat_id=msg.telegram_id,
                    message_id=msg.message_id,
                    reply_markup=None,
                    request_timeout=EDIT_TIMEOUT,
                )
                edited += 1
            except TelegramBadRequest as err:  # not modified, not found, can't be edited
                log.info("buttons of message %s stay: %s", msg.message_id, err.message)
            except (TelegramAPIError, TelegramNetworkError, TimeoutError) as err:
                log.info("clearing buttons of lead %s left for later: %s", step.lead_id, err)
                break
        await ledger.buttons_cleared(msg.delivery_key)
    return edited
