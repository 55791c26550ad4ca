"""/leads: a paginated list, a lead's detail with its plan timeline, and lead actions."""

from __future__ import annotations

import asyncio

import asyncpg
from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from temporalio.service import RPCError

from bot.callbacks import LeadAct, LeadCallback, LeadsPage, LeadStatusCallback
from bot.keyboards import lead_keyboard, leads_keyboard, status_keyboard
from bot.routers.common import edit, owned_lead_or_alert, rejection_text
from bot.services import ActionRejected, PlanService
from bot.texts import NOT_YOURS, lead_detail, leads_page
from storage.activity_log import ActivityLogRepository
from storage.leads import LeadRepository
from storage.models import CLOSED_LEAD_STATUSES, Lead
from storage.users import UserRepository
from telegram_ui.render import clip
from workflows.models import TERMINAL_PLAN_STATUSES, PlanState

PAGE_SIZE = 5
# After the cancel signal the workflow needs a moment to close; show the result, not a race.
SETTLE_TIMEOUT = 3.0


async def page_view(
    pool: asyncpg.Pool, plans: PlanService, owner: int, page: int
) -> tuple[str, InlineKeyboardMarkup]:
    repo = LeadRepository(pool)
    total = await repo.count_for_owner(owner)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    leads = await repo.list_for_owner(owner, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    states = await asyncio.gather(*(plans.state(lead.id) for lead in leads))
    text = leads_page(
        list(zip(leads, states, strict=True)), page, pages, PAGE_SIZE, plans.settings.day_seconds
    )
    return text, leads_keyboard(leads, page, pages, page * PAGE_SIZE + 1)


async def show_detail(
    query: CallbackQuery, lead: Lead, plans: PlanService, state: PlanState | None = None
) -> None:
    if state is None:
        state = await plans.state(lead.id)
    await edit(
        query, lead_detail(lead, state, plans.settings.day_seconds), lead_keyboard(lead, state)
    )


async def settled_state(plans: PlanService, lead_id: int) -> PlanState | None:
    """The plan's state once it has finished, or the latest one after a short wait."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
    while True:
        state = await plans.state(lead_id)
        if state is None or state.status in TERMINAL_PLAN_STATUSES:
            return state
        if asyncio.get_running_loop().time() > deadline:
            return state
        await asyncio.sleep(0.1)


async def leads(message: Message, pool: asyncpg.Pool, plans: PlanService) -> None:
    assert message.from_user is not None
    text, kb = await page_view(pool, plans, message.from_user.id, 0)
    await message.answer(text, reply_markup=kb)


async def leads_page_cb(
    query: CallbackQuery, callback_data: LeadsPage, pool: asyncpg.Pool, plans: PlanService
) -> None:
    text, kb = await page_view(pool, plans, query.from_user.id, callback_data.page)
    await edit(query, text, kb)
    await query.answer()


async def lead_action(
    query: CallbackQuery,
    callback_data: LeadCallback,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
) -> None:
    lead = await owned_lead_or_alert(query, pool, callback_data.lead_id)
    if lead is None:
        return
    act = callback_data.act
    if act == LeadAct.OPEN:
        await show_detail(query, lead, plans)
        await query.answer()
        return
    if act == LeadAct.STATUS_MENU:
        await edit(
            query,
            f"Choose the new status for <b>{clip(lead.prospect_name, 80)}</b>:",
            status_keyboard(lead),
        )
        await query.answer()
        return
    if act == LeadAct.STOP:
        state = await plans.state(lead.id)
        if state is None or state.status in TERMINAL_PLAN_STATUSES:
            await query.answer("Already handled: the plan is not running")
            return
        await plans.cancel(lead.id, "stopped by owner")
        await show_detail(query, lead, plans, await settled_state(plans, lead.id))
        await query.answer("Plan stopped 🛑")
        return
    if act == LeadAct.REGENERATE:
        await query.answer("Drafting a new plan…")
        current = await plans.state(lead.id)
        if current is None or current.status in TERMINAL_PLAN_STATUSES:
            # Nothing open (never started, finished or stopped): a fresh plan, whose draft
            # the workflow sends with Start plan · Regenerate · Discard.
            try:
                await plans.start(lead, await UserRepository(pool).get(lead.telegram_id))
            except RPCError:
                await bot.send_message(
                    query.from_user.id, "⚠️ The planner is unreachable right now. Try again later."
                )
            return
        try:
            new = await plans.regenerate(lead.id)
        except ActionRejected as err:
            await bot.send_message(
                query.from_user.id, f"⚠️ Could not regenerate: {clip(err.reason, 300)}"
            )
            return
        await show_detail(query, lead, plans, new)
        return
    try:
        if act == LeadAct.PAUSE:
            new = await plans.pause(lead.id)
            answer = "Paused ⏸"
        else:
            new = await plans.resume(lead.id)
            answer = "Resumed ▶️"
    except ActionRejected as err:
        await query.answer(rejection_text(err.reason))
        return
    await show_detail(query, lead, plans, new)
    await query.answer(answer)


async def change_status(
    query: CallbackQuery,
    callback_data: LeadStatusCallback,
    pool: asyncpg.Pool,
    plans: PlanService,
) -> None:
    """One atomic status change, logged; closing a lead cancels its plan by signal."""
    owner = query.from_user.id
    change = await LeadRepository(pool).set_status(
        callback_data.lead_id, owner, callback_data.status
    )
    if change is None:
        await query.answer(NOT_YOURS, show_alert=True)
        return
    previous, lead = change
    if previous == lead.status:
        await show_detail(query, lead, plans)
        await query.answer(f"Already {lead.status.value}")
        return
    await ActivityLogRepository(pool).add(
        lead.id,
        owner,
        "status_change",
        f"{previous.value} → {lead.status.value}",
        metadata={"from": previous.value, "to": lead.status.value},
    )
    state = None
    answer = f"Status: {lead.status.value}"
    if lead.status in CLOSED_LEAD_STATUSES and previous not in CLOSED_LEAD_STATUSES:
        await plans.cancel(lead.id, f"lead {lead.status.value}")
        state = await settled_state(plans, lead.id)
        answer += "; plan stopped"
    await show_detail(query, lead, plans, state)
    await query.answer(answer)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="leads")
    router.message(Command("leads"))(leads)
    router.callback_query(LeadsPage.filter())(leads_page_cb)
    router.callback_query(LeadCallback.filter())(lead_action)
    router.callback_query(LeadStatusCallback.filter())(change_status)
    return router
