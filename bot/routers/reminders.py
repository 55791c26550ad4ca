"""Buttons on reminders: Done · Snooze 1d · Snooze 3d · Skip · Full draft · Stop plan.

The workflow's update validators decide whether a tap still applies; a stale or
double tap is rejected there and answered "Already handled" here, with nothing changed.
An answered step keeps no live buttons: the tapped message is edited, and any other
reminder of the step that still shows buttons (a nudge, an older one) loses them.
"""

from __future__ import annotations

import contextlib
import logging

import asyncpg
from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message

from bot.routers.common import cancel_or_alert, edit, owned_lead_or_alert
from services.plans import ActionRejected, PlanService
from storage.deliveries import StepRef
from storage.lead_views import LeadViews
from storage.reminders import ReminderRepository
from telegram_ui.callbacks import StepAct, StepCallback
from telegram_ui.stale_buttons import clear_stale_buttons
from telegram_ui.texts import (
    PLAN_REPLACED,
    STOPPED_SHORT,
    already_handled,
    full_draft,
    rejection_text,
    reminder_outcome,
    step_done,
    step_skipped,
    step_snoozed,
    stopped_reminder,
)
from workflows.models import PlanState

log = logging.getLogger("leadpilot.bot")

SNOOZE_DAYS = {StepAct.SNOOZE_1D: 1, StepAct.SNOOZE_3D: 3}


async def drop_buttons(query: CallbackQuery) -> None:
    msg = query.message
    if isinstance(msg, Message) and msg.reply_markup is not None:
        with contextlib.suppress(TelegramBadRequest):
            await msg.edit_reply_markup(reply_markup=None)


async def on_step(
    query: CallbackQuery,
    callback_data: StepCallback,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
) -> None:
    cb = callback_data
    lead = await owned_lead_or_alert(query, pool, cb.lead_id)
    if lead is None:
        return
    if cb.act == StepAct.FULL_DRAFT:
        # The mirror holds every step's draft: no worker needed to read it.
        row = await ReminderRepository(pool).get_by_lead_and_step(lead.id, cb.step_id, cb.version)
        if row is None or not row.draft_text:
            await query.answer(PLAN_REPLACED)
            return
        await query.answer()
        await bot.send_message(query.from_user.id, full_draft(row.draft_text))
        return
    if cb.act == StepAct.STOP_PLAN:
        view = await LeadViews(pool).timeline(lead.id, query.from_user.id)
        if view is None or not view.running:
            status = view.plan_status.value if view and view.plan_status else "finished"
            await query.answer(already_handled(status))
            return
        if not await cancel_or_alert(query, plans, lead.id, "stopped from a reminder"):
            return
        await edit(query, stopped_reminder(lead))
        await query.answer(STOPPED_SHORT)
        return

    new_state: PlanState
    try:
        if cb.act == StepAct.DONE:
            new_state = await plans.complete(lead.id, cb.version, cb.step_id)
            outcome, answer = step_done()
        elif cb.act == StepAct.SKIP:
            new_state = await plans.skip(lead.id, cb.version, cb.step_id)
            outcome, answer = step_skipped()
        else:
            days = SNOOZE_DAYS[cb.act]
            new_state = await plans.snooze(lead.id, cb.version, cb.step_id, days)
            outcome, answer = step_snoozed(days)
    except ActionRejected as err:
        if err.already_handled:
            await drop_buttons(query)  # a stale reminder should not invite more taps
        await query.answer(rejection_text(err))
        return
    # Edit first, then answer: when the spinner stops, the message already says what happened.
    await edit(query, reminder_outcome(lead, new_state, cb.step_id, outcome))
    await query.answer(answer)
    tapped = query.message.message_id if query.message else None
    try:
        await clear_stale_buttons(
            bot, pool, StepRef(lead.id, cb.version, cb.step_id), edited_message_id=tapped
        )
    except Exception as err:  # cosmetic (database or Telegram away): the answer stands
        log.info("stale buttons of lead %s not cleared: %r", lead.id, err)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="reminders")
    router.callback_query(StepCallback.filter())(on_step)
    return router
