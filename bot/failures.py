"""No update is dropped silently: a handler that fails still gets the user an answer.

Registered as the dispatcher's error handler (aiogram's ErrorsMiddleware wraps every
update, including the FSM storage read and the user-registering middleware), so a
database or Temporal outage answers "try again in a moment" instead of nothing; a
button press is answered at once, well within Telegram's callback deadline.
"""

from __future__ import annotations

import contextlib
import logging

import asyncpg
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import ErrorEvent
from temporalio.service import RPCError

from telegram_ui.texts import BROKEN, TRY_AGAIN

log = logging.getLogger("leadpilot.bot")


TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # pool closing, connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # server shutting down / starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    OSError,  # connection refused
    TimeoutError,
    RPCError,  # Temporal unreachable
)


def is_transient(err: BaseException) -> bool:
    return isinstance(err, TRANSIENT)


async def answer_failure(event: ErrorEvent, bot: Bot) -> bool:
    """Tell the user; True marks the error handled (it is logged here, with the update)."""
    err = event.exception
    update = event.update
    if isinstance(err, TelegramBadRequest) and isinstance(err.method, AnswerCallbackQuery):
        # A late answer after CallbackDeadlineMiddleware answered "still working".
        log.info("update %s: callback answered already: %s", update.update_id, err.message)
        return True
    transient = is_transient(err)
    log.log(
        logging.WARNING if transient else logging.ERROR,
        "update %s failed: %r",
        update.update_id,
        err,
        exc_info=None if transient else err,
    )
    text = TRY_AGAIN if transient else BROKEN
    # The user should hear about it, but Telegram itself may be what failed.
    with contextlib.suppress(TelegramAPIError):
        if update.callback_query is not None:
            await update.callback_query.answer(text[:200], show_alert=True)
        elif update.message is not None:
            await bot.send_message(update.message.chat.id, text)
    return True
