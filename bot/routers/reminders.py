"""Buttons on reminders: Done · Snooze 1d · Snooze 3d · Skip · Full draft · Stop plan.

The workflow's update validators decide whether a tap still applies; a stale or
double tap is rejected there and answered "Already handled" here, with nothing changed.
"""

from __future__ import annotations

import asyncpg
from aiogram import Bot, Router
from aiogram.types import CallbackQuery

from bot.routers.common import edit, owned_lead_or_alert, rejection_text
from bot.services import ActionRejected, PlanService
from bot.texts import reminder_outcome
from telegram_ui.callbacks import StepAct, StepCallback
from telegram_ui.render import full_draft_text
from workflows.models import TERMINAL_PLAN_STATUSES, PlanState

SNOOZE_DAYS = {StepAct.SNOOZE_1D: 1, StepAct.SNOOZE_3D: 3}


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
        state = await plans.state(lead.id)
        step = state.step(cb.step_id) if state and state.plan_version == cb.version else None
        if step is None:
            await query.answer("Already handled: this plan was replaced")
            return
        await query.answer()
        await bot.send_message(query.from_user.id, full_draft_text(step))
        return
    if cb.act == StepAct.STOP_PLAN:
        state = await plans.state(lead.id)
        if state is None or state.status in TERMINAL_PLAN_STATUSES:
            status = state.status.value if state else "finished"
            await query.answer(f"Already handled: plan is {status}")
            return
        await plans.cancel(lead.id, "stopped from a reminder")
        await edit(
            query,
            reminder_outcome(
                lead,
                state,
                cb.step_id,
                "🛑 Plan stopped. No more reminders for this lead.",
                show_next=False,
            ),
        )
        await query.answer("Plan stopped")
        return

    new_state: PlanState
    try:
        if cb.act == StepAct.DONE:
            new_state = await plans.complete(lead.id, cb.version, cb.step_id)
            outcome, answer = "✅ Done.", "Marked done ✅"
        elif cb.act == StepAct.SKIP:
            new_state = await plans.skip(lead.id, cb.version, cb.step_id)
            outcome, answer = "⏭ Skipped.", "Skipped ⏭"
        else:
            days = SNOOZE_DAYS[cb.act]
            new_state = await plans.snooze(lead.id, cb.version, cb.step_id, days)
            unit = "day" if days == 1 else "days"
            outcome, answer = f"💤 Snoozed {days} {unit}.", f"Snoozed {days} {unit} 💤"
    except ActionRejected as err:
        await query.answer(rejection_text(err.reason))
        return
    # Edit first, then answer: when the spinner stops, the message already says what happened.
    await edit(query, reminder_outcome(lead, new_state, cb.step_id, outcome))
    await query.answer(answer)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="reminders")
    router.callback_query(StepCallback.filter())(on_step)
    return router
