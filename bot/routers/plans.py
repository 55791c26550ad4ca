"""Buttons on a drafted plan (sent by the workflow): Start plan · Regenerate · Discard."""

from __future__ import annotations

import asyncpg
from aiogram import Bot, Router
from aiogram.types import CallbackQuery

from bot.routers.common import edit, owned_lead_or_alert, rejection_text
from bot.services import ActionRejected, PlanService
from bot.texts import next_phrase
from telegram_ui.callbacks import PlanAct, PlanCallback
from telegram_ui.render import MESSAGE_LIMIT, clip, lead_label, plan_text
from workflows.models import PlanStatus


async def on_plan(
    query: CallbackQuery,
    callback_data: PlanCallback,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
) -> None:
    cb = callback_data
    lead = await owned_lead_or_alert(query, pool, cb.lead_id)
    if lead is None:
        return
    label = lead_label(lead.prospect_name, lead.prospect_company)
    state = await plans.state(lead.id)
    if state is None:
        await query.answer("Already handled: this plan is gone")
        return
    # approve/discard carry no version of their own: check here that the owner acts on
    # the draft they saw, not on a newer one that replaced it.
    if state.plan_version != cb.version or state.status != PlanStatus.AWAITING_APPROVAL:
        what = (
            "this plan was replaced"
            if state.plan_version != cb.version
            else f"plan is {state.status.value}"
        )
        await query.answer(f"Already handled: {what}")
        return
    match cb.act:
        case PlanAct.START:
            try:
                new = await plans.approve(lead.id)
            except ActionRejected as err:
                await query.answer(rejection_text(err.reason))
                return
            footer = f"\n\n▶️ <b>Plan started.</b> {next_phrase(new)}"
            body = plan_text(lead.prospect_name, lead.prospect_company, new)
            if len(body) + len(footer) > MESSAGE_LIMIT:
                body = f"📋 Engagement plan for {label}: {len(new.steps)} steps"
            await edit(query, body + footer)
            await query.answer("Plan started ▶️")
        case PlanAct.REGENERATE:
            await query.answer("Drafting a new plan…")
            await edit(query, f"🔄 Drafting a new plan for {label}…")
            try:
                await plans.regenerate(lead.id)  # the workflow sends the new draft itself
            except ActionRejected as err:
                await bot.send_message(
                    query.from_user.id, f"⚠️ Could not regenerate: {clip(err.reason, 300)}"
                )
        case PlanAct.DISCARD:
            await plans.cancel(lead.id, "plan discarded by owner")
            await edit(query, f"🗑 Plan for {label} discarded.")
            await query.answer("Discarded")


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="plans")
    router.callback_query(PlanCallback.filter())(on_plan)
    return router
