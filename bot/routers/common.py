"""Helpers the feature routers share: ownership checks, safe edits, rejection texts."""

from __future__ import annotations

import contextlib

import asyncpg
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.texts import NOT_YOURS
from storage.leads import LeadRepository
from storage.models import Lead

ANSWER_LIMIT = 200


async def owned_lead_or_alert(
    query: CallbackQuery, pool: asyncpg.Pool, lead_id: int
) -> Lead | None:
    """The lead if the presser owns it; otherwise answer with an alert and return None.

    A foreign or forged lead id looks exactly like a missing one, so nothing leaks.
    """
    lead = await LeadRepository(pool).get_owned(lead_id, query.from_user.id)
    if lead is None:
        await query.answer(NOT_YOURS, show_alert=True)
    return lead


def rejection_text(reason: str) -> str:
    """What a stale or double tap hears: always starts with "Already handled" when it is one."""
    low = reason.lower()
    if low.startswith("already handled"):
        text = "Already handled" + reason[len("already handled") :]
    elif low.startswith("plan already"):
        text = f"Already handled: {reason}"
    else:
        text = reason[:1].upper() + reason[1:]
    return text[:ANSWER_LIMIT]


async def edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit the message the button sits on; an unchanged or vanished message is fine."""
    msg = query.message
    if not isinstance(msg, Message):
        return
    with contextlib.suppress(TelegramBadRequest):
        await msg.edit_text(text, reply_markup=markup)
