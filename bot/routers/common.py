"""Helpers the feature routers share: the ownership check, stopping a plan, safe edits
(their words are in telegram_ui.texts, shared with the Mini App)."""

from __future__ import annotations

import contextlib

import asyncpg
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from temporalio.service import RPCError

from services.plans import PlanService
from storage.leads import LeadRepository
from storage.models import Lead
from telegram_ui.texts import NOT_YOURS, UNREACHABLE


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


async def edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit the message the button sits on; an unchanged or vanished message is fine."""
    msg = query.message
    if not isinstance(msg, Message):
        return
    with contextlib.suppress(TelegramBadRequest):
        await msg.edit_text(text, reply_markup=markup)


async def cancel_or_alert(
    query: CallbackQuery, plans: PlanService, lead_id: int, reason: str
) -> bool:
    """Send the plan its cancel signal; False, with the owner told, if Temporal is away."""
    try:
        await plans.cancel(lead_id, reason)
    except RPCError:
        await query.answer(UNREACHABLE, show_alert=True)
        return False
    return True
