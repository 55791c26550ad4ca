"""Helpers the feature routers share: ownership checks, safe edits, rejection texts."""

from __future__ import annotations

import contextlib

import asyncpg
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.services import ActionRejected, NoWorkerInTime
from storage.leads import LeadRepository
from storage.models import Lead
from telegram_ui.texts import NOT_YOURS
from workflows.errors import Rejection

ANSWER_LIMIT = 200

# What the owner reads for each typed refusal of the workflow (workflows/errors.py).
REJECTION_TEXT: dict[Rejection, str] = {
    Rejection.ALREADY_HANDLED: "Already handled",
    Rejection.PLAN_FINISHED: "Already handled: the plan has finished",
    Rejection.NOT_DUE: "That step isn't due yet; nothing was changed",
    Rejection.NOT_STARTED: "The plan hasn't started yet: press ▶️ Start plan first",
    Rejection.WRONG_STATUS: "Not possible in the plan's current state; nothing was changed",
    Rejection.BUSY: "A new plan is being drafted; try again once it arrives",
    Rejection.LEAD_CLOSED: "This lead is closed. Reopen it (🏷 Change status) to plan again",
    Rejection.INVALID: "That doesn't fit this plan; nothing was changed",
    Rejection.DRAFT_FAILED: "The planner couldn't draft a plan; try 🔄 Regenerate again",
}
NO_WORKER = "⏳ Taking longer than usual; the plan will catch up, check it in a minute"
UNREACHABLE = "⏳ The planner is unreachable right now; please try again in a moment"
FAILED = "⚠️ That didn't work; nothing was changed. Please try again"
LEAD_CLOSED = REJECTION_TEXT[Rejection.LEAD_CLOSED] + "."


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


def rejection_text(err: ActionRejected) -> str:
    """What a refused or unreachable action hears; a stale or double tap always starts
    with "Already handled"."""
    if isinstance(err, NoWorkerInTime):
        text = NO_WORKER
    elif err.kind is not None:
        text = REJECTION_TEXT[err.kind]
    elif err.unreachable:
        text = UNREACHABLE
    else:  # an untyped failure of the update: say so rather than guess
        text = FAILED
    return text[:ANSWER_LIMIT]


async def edit(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Edit the message the button sits on; an unchanged or vanished message is fine."""
    msg = query.message
    if not isinstance(msg, Message):
        return
    with contextlib.suppress(TelegramBadRequest):
        await msg.edit_text(text, reply_markup=markup)
