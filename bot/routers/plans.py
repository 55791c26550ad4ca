"""Buttons on a drafted plan (sent by the workflow): Start plan · Regenerate · Discard."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from aiogram import Router
from aiogram.types import CallbackQuery

from bot.routers.common import cancel_or_alert, edit, owned_lead_or_alert
from services.plans import ActionRejected, PlanService, is_closed
from storage.lead_views import LeadViews, MirroredPlanStatus
from storage.models import Lead, User
from telegram_ui.callbacks import PlanAct, PlanCallback
from telegram_ui.texts import (
    DISCARDED,
    DRAFTING_SHORT,
    LEAD_CLOSED,
    PLAN_GONE,
    PLAN_REPLACED,
    PLAN_STARTED,
    already_handled,
    plan_discarded,
    plan_redrafting,
    plan_started,
    rejection_text,
)
from workflows.models import PlanState


async def _vacation(plans: PlanService, lead: Lead, user: User) -> PlanState | None:
    """A plan started during the owner's /pause joins the vacation (users.paused_until)."""
    until = user.paused_until
    if until is None or until <= datetime.now(UTC):
        return None
    try:
        return await plans.pause(lead.id, until, patient=True)
    except ActionRejected:
        return None


async def on_plan(
    query: CallbackQuery,
    callback_data: PlanCallback,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User,
) -> None:
    cb = callback_data
    lead = await owned_lead_or_alert(query, pool, cb.lead_id)
    if lead is None:
        return
    if cb.act != PlanAct.DISCARD and is_closed(lead):
        await query.answer(LEAD_CLOSED, show_alert=True)
        return
    # The mirror says which draft is current (no worker needed to read it); the workflow
    # checks the version again when it applies the action.
    view = await LeadViews(pool).timeline(lead.id, query.from_user.id)
    if view is None or view.plan_status is None or not view.running:
        await query.answer(PLAN_GONE)
        return
    if view.lead.plan_version != cb.version:
        await query.answer(PLAN_REPLACED)
        return
    if view.plan_status != MirroredPlanStatus.AWAITING_APPROVAL:
        await query.answer(already_handled(view.plan_status.value))
        return
    match cb.act:
        case PlanAct.START:
            try:
                new = await plans.approve(lead, cb.version)
            except ActionRejected as err:
                await query.answer(rejection_text(err))
                return
            paused = await _vacation(plans, lead, user)
            await edit(query, plan_started(lead, new, paused, user.paused_until, user.timezone))
            await query.answer(PLAN_STARTED)
        case PlanAct.REGENERATE:
            try:
                await plans.regenerate(lead)  # the workflow sends the new draft itself
            except ActionRejected as err:
                await query.answer(rejection_text(err), show_alert=True)
                return
            await edit(query, plan_redrafting(lead))
            await query.answer(DRAFTING_SHORT)
        case PlanAct.DISCARD:
            if not await cancel_or_alert(query, plans, lead.id, "plan discarded by owner"):
                return
            await edit(query, plan_discarded(lead))
            await query.answer(DISCARDED)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="plans")
    router.callback_query(PlanCallback.filter())(on_plan)
    return router
