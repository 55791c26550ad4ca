"""Adding a lead: /add (name → company → context) or "make a lead of this?" for any text.

The lead is stored, its plan workflow started without steps; the workflow drafts the
plan and sends the Start plan / Regenerate / Discard message itself.
"""

from __future__ import annotations

import logging

import asyncpg
from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
)
from temporalio.service import RPCError

from bot.routers.common import edit
from services.plans import PlanService
from storage.leads import LeadRepository
from storage.models import User
from telegram_ui.callbacks import MakeLeadAct, MakeLeadCallback
from telegram_ui.keyboards import make_lead_keyboard
from telegram_ui.texts import (
    ASK_CONTEXT,
    ASK_NAME,
    NEEDS_TEXT,
    OFFER_ACCEPTED_ASK_NAME,
    OFFER_DECLINED,
    OFFER_EXPIRED,
    ask_company,
    drafting_for,
    make_lead_question,
    making_lead,
    saved_but_unreachable,
    too_long_note,
)

log = logging.getLogger("leadpilot.bot")

NAME_MAX = 200
COMPANY_MAX = 200
CONTEXT_MAX = 4000
SKIP = {"-", "skip", "—"}


class AddLead(StatesGroup):
    name = State()
    company = State()
    context = State()


async def create_lead(
    bot: Bot,
    owner: int,
    user: User | None,
    pool: asyncpg.Pool,
    plans: PlanService,
    name: str,
    company: str | None,
    context: str | None,
) -> None:
    lead = await LeadRepository(pool).create(
        telegram_id=owner,
        prospect_name=name,
        prospect_company=company,
        original_context=context,
    )
    try:
        await plans.start(lead, user)
    except RPCError as err:
        log.warning("could not start the plan of lead %s: %s", lead.id, err)
        await bot.send_message(owner, saved_but_unreachable(lead))
        return
    await bot.send_message(owner, drafting_for(lead))


def optional_answer(message: Message, limit: int) -> str | None:
    """A dialog answer that may be skipped ("-", "skip"); cut to `limit` characters."""
    assert message.text is not None
    raw = message.text.strip()
    return None if raw.lower() in SKIP else raw[:limit]


async def add(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(AddLead.name)
    await message.answer(ASK_NAME)


async def got_name(message: Message, state: FSMContext) -> None:
    assert message.text is not None
    name = message.text.strip()[:NAME_MAX]
    await state.update_data(name=name)
    await state.set_state(AddLead.company)
    await message.answer(ask_company(name))


async def got_detail(
    message: Message,
    state: FSMContext,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User | None = None,
) -> None:
    """The company, then the context (either may be skipped); the lead is created as soon
    as both are known (after "make a lead of this?" the context is known from the start)."""
    assert message.from_user is not None
    if await state.get_state() == AddLead.company.state:
        data = await state.update_data(company=optional_answer(message, COMPANY_MAX))
        if not data.get("context"):
            await state.set_state(AddLead.context)
            await message.answer(ASK_CONTEXT)
            return
    else:
        await note_if_too_long(message)
        data = await state.update_data(context=optional_answer(message, CONTEXT_MAX))
    await state.clear()
    await create_lead(
        bot,
        message.from_user.id,
        user,
        pool,
        plans,
        data["name"],
        data.get("company"),
        data.get("context"),
    )


async def dialog_needs_text(message: Message) -> None:
    await message.answer(NEEDS_TEXT)


def origin_name(message: Message) -> str | None:
    """Who wrote a forwarded message, as far as Telegram tells us."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        user = origin.sender_user
        return " ".join(p for p in (user.first_name, user.last_name) if p)
    if isinstance(origin, MessageOriginHiddenUser):
        return origin.sender_user_name
    if isinstance(origin, MessageOriginChat):
        return origin.sender_chat.title
    if isinstance(origin, MessageOriginChannel):
        return origin.chat.title
    return None


async def note_if_too_long(message: Message) -> None:
    """Say so when the context answer is cut to CONTEXT_MAX."""
    assert message.text is not None
    if len(message.text.strip()) > CONTEXT_MAX:
        await message.answer(too_long_note(len(message.text.strip()), CONTEXT_MAX))


async def offer(message: Message, state: FSMContext) -> None:
    """Any plain or forwarded text outside a dialog: offer to turn it into a lead."""
    assert message.text is not None
    if len(message.text) > CONTEXT_MAX:
        await message.answer(too_long_note(len(message.text), CONTEXT_MAX))
    who = origin_name(message)
    await state.update_data(pending_text=message.text[:CONTEXT_MAX], pending_name=who)
    await message.answer(make_lead_question(who), reply_markup=make_lead_keyboard())


async def offer_accepted(
    query: CallbackQuery,
    state: FSMContext,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User | None = None,
) -> None:
    data = await state.get_data()
    text = data.get("pending_text")
    if not text:
        await query.answer(OFFER_EXPIRED)
        return
    name = data.get("pending_name")
    await state.clear()
    if name:
        await edit(query, making_lead(name))
        await query.answer()
        await create_lead(bot, query.from_user.id, user, pool, plans, name[:NAME_MAX], None, text)
        return
    await state.update_data(context=text)
    await state.set_state(AddLead.name)
    await edit(query, OFFER_ACCEPTED_ASK_NAME)
    await query.answer()


async def offer_declined(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await edit(query, OFFER_DECLINED)
    await query.answer()


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="add_lead")
    router.message(Command("add"))(add)
    router.message(AddLead.name, F.text, ~F.text.startswith("/"))(got_name)
    router.message(AddLead.company, F.text, ~F.text.startswith("/"))(got_detail)
    router.message(AddLead.context, F.text, ~F.text.startswith("/"))(got_detail)
    router.message(StateFilter(AddLead))(dialog_needs_text)
    router.message(StateFilter(None), F.text, ~F.text.startswith("/"))(offer)
    router.callback_query(MakeLeadCallback.filter(F.act == MakeLeadAct.YES))(offer_accepted)
    router.callback_query(MakeLeadCallback.filter(F.act == MakeLeadAct.NO))(offer_declined)
    return router
