"""/leads: a paginated list, a lead's detail with its plan timeline, and lead actions.

Everything shown is read from the PostgreSQL mirror (storage.lead_views, one
owner-scoped query per screen): fast for a big pipeline and available while no worker
runs. Temporal is asked only to change a plan.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from temporalio.service import RPCError

from bot.routers.common import cancel_or_alert, edit, owned_lead_or_alert
from services.plans import ActionRejected, PlanService, is_closed
from storage.lead_views import FINISHED, LeadTimeline, LeadViews
from storage.models import CLOSED_LEAD_STATUSES, Lead, User
from storage.plan_cancels import PlanCancelOutbox
from telegram_ui.callbacks import LeadAct, LeadCallback, LeadsPage, LeadStatusCallback
from telegram_ui.keyboards import lead_keyboard, leads_keyboard, status_keyboard
from telegram_ui.texts import (
    DRAFTING,
    LEAD_CLOSED,
    NOT_YOURS,
    PAUSED,
    PLAN_NOT_RUNNING,
    RESUMED,
    STOPPED,
    UNREACHABLE,
    lead_detail,
    leads_page,
    rejection_text,
    status_changed,
    status_menu,
)

PAGE_SIZE = 5
# After the cancel signal the workflow needs a moment to mirror it; show the result.
SETTLE_TIMEOUT = 3.0


async def page_view(
    pool: asyncpg.Pool, owner: int, page: int, day_seconds: int
) -> tuple[str, InlineKeyboardMarkup]:
    views = LeadViews(pool)
    page = max(page, 0)
    total, rows = await views.page(owner, PAGE_SIZE, page * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    if page >= pages:  # the list shrank since the button was drawn
        page = pages - 1
        total, rows = await views.page(owner, PAGE_SIZE, page * PAGE_SIZE)
    text = leads_page(rows, page, pages, PAGE_SIZE, day_seconds)
    return text, leads_keyboard([r.lead for r in rows], page, pages, page * PAGE_SIZE + 1)


async def show_detail(
    query: CallbackQuery, pool: asyncpg.Pool, plans: PlanService, user: User, lead_id: int
) -> LeadTimeline | None:
    view = await LeadViews(pool).timeline(lead_id, user.telegram_id)
    if view is None:
        return None
    pending = is_closed(view.lead) and await PlanCancelOutbox(pool).pending(lead_id) is not None
    text = lead_detail(view, user.timezone, plans.settings.day_seconds, cancel_pending=pending)
    await edit(query, text, lead_keyboard(view.lead, view.plan_status))
    return view


async def settled(pool: asyncpg.Pool, lead_id: int, owner: int) -> None:
    """Wait (briefly) until the mirror shows the plan finished."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        view = await LeadViews(pool).timeline(lead_id, owner)
        if view is None or view.plan_status is None or view.plan_status in FINISHED:
            return
        await asyncio.sleep(0.1)


async def leads(message: Message, pool: asyncpg.Pool, plans: PlanService) -> None:
    assert message.from_user is not None
    text, kb = await page_view(pool, message.from_user.id, 0, plans.settings.day_seconds)
    await message.answer(text, reply_markup=kb)


async def leads_page_cb(
    query: CallbackQuery, callback_data: LeadsPage, pool: asyncpg.Pool, plans: PlanService
) -> None:
    text, kb = await page_view(
        pool, query.from_user.id, callback_data.page, plans.settings.day_seconds
    )
    await edit(query, text, kb)
    await query.answer()


async def _plan_running(pool: asyncpg.Pool, lead_id: int, owner: int) -> bool:
    view = await LeadViews(pool).timeline(lead_id, owner)
    return view is not None and view.running


async def _regenerate(
    query: CallbackQuery, lead: Lead, running: bool, plans: PlanService, user: User
) -> None:
    """A fresh draft is accepted at once; it arrives as its own message with Start plan."""
    if is_closed(lead):
        await query.answer(LEAD_CLOSED, show_alert=True)
        return
    try:
        if running:
            await plans.regenerate(lead)
        else:
            # Nothing open (never started, finished or stopped): a fresh plan.
            await plans.start(lead, user)
    except ActionRejected as err:
        await query.answer(rejection_text(err), show_alert=True)
        return
    except RPCError:
        await query.answer(UNREACHABLE, show_alert=True)
        return
    await query.answer(DRAFTING)


async def lead_action(
    query: CallbackQuery,
    callback_data: LeadCallback,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User,
) -> None:
    owner = query.from_user.id
    act = callback_data.act
    if act == LeadAct.OPEN:
        if await show_detail(query, pool, plans, user, callback_data.lead_id) is None:
            await query.answer(NOT_YOURS, show_alert=True)
            return
        await query.answer()
        return
    lead = await owned_lead_or_alert(query, pool, callback_data.lead_id)
    if lead is None:
        return
    if act == LeadAct.STATUS_MENU:
        await edit(query, status_menu(lead), status_keyboard(lead))
        await query.answer()
        return
    if act == LeadAct.REGENERATE:
        await _regenerate(query, lead, await _plan_running(pool, lead.id, owner), plans, user)
        return
    if act == LeadAct.STOP:
        if not await _plan_running(pool, lead.id, owner):
            await query.answer(PLAN_NOT_RUNNING)
            return
        if not await cancel_or_alert(query, plans, lead.id, "stopped by owner"):
            return
        await settled(pool, lead.id, owner)
        await show_detail(query, pool, plans, user, lead.id)
        await query.answer(STOPPED)
        return
    try:
        if act == LeadAct.PAUSE:
            await plans.pause(lead.id)
            answer = PAUSED
        else:
            await plans.resume(lead.id)
            answer = RESUMED
    except ActionRejected as err:
        await query.answer(rejection_text(err))
        return
    await show_detail(query, pool, plans, user, lead.id)
    await query.answer(answer)


async def change_status(
    query: CallbackQuery,
    callback_data: LeadStatusCallback,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User,
) -> None:
    """One atomic status change, logged; closing a lead stops its plan, durably."""
    owner = query.from_user.id
    result = await plans.close_lead(callback_data.lead_id, owner, callback_data.status)
    if result is None:
        await query.answer(NOT_YOURS, show_alert=True)
        return
    previous, lead, stopped = result
    if stopped and is_closed(lead) and previous not in CLOSED_LEAD_STATUSES:
        await settled(pool, lead.id, owner)
    await show_detail(query, pool, plans, user, lead.id)
    answer = status_changed(previous, lead.status, stopped=stopped, chat=True)
    await query.answer(answer, show_alert=not stopped)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="leads")
    router.message(Command("leads"))(leads)
    router.callback_query(LeadsPage.filter())(leads_page_cb)
    router.callback_query(LeadCallback.filter())(lead_action)
    router.callback_query(LeadStatusCallback.filter())(change_status)
    return router
