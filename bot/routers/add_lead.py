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
from bot.services import PlanService
from storage.leads import LeadRepository
from storage.models import User
from telegram_ui.callbacks import MakeLeadAct, MakeLeadCallback
from telegram_ui.keyboards import make_lead_keyboard
from telegram_ui.texts import clip, lead_label

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
    label = lead_label(lead.prospect_name, lead.prospect_company)
    try:
        await plans.start(lead, user)
    except RPCError as err:
        log.warning("could not start the plan of lead %s: %s", lead.id, err)
        await bot.send_message(
            owner,
            f"💾 Saved {label}, but the planner is unreachable right now. In a moment, open "
            "the lead in /leads and tap 🔄 Regenerate plan.",
        )
        return
    await bot.send_message(owner, f"⏳ Drafting a plan for {label}…")


async def add(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(AddLead.name)
    await message.answer("Who is the lead? Send their name. (/cancel to stop)")


async def got_name(message: Message, state: FSMContext) -> None:
    assert message.text is not None
    name = message.text.strip()[:NAME_MAX]
    await state.update_data(name=name)
    await state.set_state(AddLead.company)
    await message.answer(f"Company of {clip(name, 80)}? (send - to skip)")


async def got_company(
    message: Message,
    state: FSMContext,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User | None = None,
) -> None:
    assert message.text is not None and message.from_user is not None
    raw = message.text.strip()
    company = None if raw.lower() in SKIP else raw[:COMPANY_MAX]
    data = await state.update_data(company=company)
    if data.get("context"):  # came from "make a lead of this?": context is known
        await state.clear()
        await create_lead(
            bot, message.from_user.id, user, pool, plans, data["name"], company, data["context"]
        )
        return
    await state.set_state(AddLead.context)
    await message.answer(
        "What do you know about them — where you met, what they need? (send - to skip)"
    )


async def got_context(
    message: Message,
    state: FSMContext,
    bot: Bot,
    pool: asyncpg.Pool,
    plans: PlanService,
    user: User | None = None,
) -> None:
    assert message.text is not None and message.from_user is not None
    raw = message.text.strip()
    context = None if raw.lower() in SKIP else raw[:CONTEXT_MAX]
    data = await state.get_data()
    await state.clear()
    if len(raw) > CONTEXT_MAX:
        await message.answer(too_long_note(len(raw)))
    await create_lead(
        bot, message.from_user.id, user, pool, plans, data["name"], data.get("company"), context
    )


async def dialog_needs_text(message: Message) -> None:
    await message.answer("Please answer with text, or /cancel to stop adding the lead.")


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


def too_long_note(length: int) -> str:
    return (
        f"✂️ That note has {length} characters; I keep the first {CONTEXT_MAX} as the "
        "lead's context."
    )


async def offer(message: Message, state: FSMContext) -> None:
    """Any plain or forwarded text outside a dialog: offer to turn it into a lead."""
    assert message.text is not None
    if len(message.text) > CONTEXT_MAX:
        await message.answer(too_long_note(len(message.text)))
    await state.update_data(
        pending_text=message.text[:CONTEXT_MAX], pending_name=origin_name(message)
    )
    who = origin_name(message)
    question = (
        f"Make a lead of this message from {clip(who, 80)}?" if who else "Make a lead of this?"
    )
    await message.answer(question, reply_markup=make_lead_keyboard())


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
        await query.answer("That offer has expired; send the text again or use /add.")
        return
    name = data.get("pending_name")
    await state.clear()
    if name:
        await edit(query, f"📥 Making a lead of {clip(name, 80)}.")
        await query.answer()
        await create_lead(bot, query.from_user.id, user, pool, plans, name[:NAME_MAX], None, text)
        return
    await state.update_data(context=text)
    await state.set_state(AddLead.name)
    await edit(query, "📥 OK. Who is the lead? Send their name. (/cancel to stop)")
    await query.answer()


async def offer_declined(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await edit(query, "OK, I'll leave it. Send /help to see what I can do.")
    await query.answer()


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="add_lead")
    router.message(Command("add"))(add)
    router.message(AddLead.name, F.text, ~F.text.startswith("/"))(got_name)
    router.message(AddLead.company, F.text, ~F.text.startswith("/"))(got_company)
    router.message(AddLead.context, F.text, ~F.text.startswith("/"))(got_context)
    router.message(StateFilter(AddLead))(dialog_needs_text)
    router.message(StateFilter(None), F.text, ~F.text.startswith("/"))(offer)
    router.callback_query(MakeLeadCallback.filter(F.act == MakeLeadAct.YES))(offer_accepted)
    router.callback_query(MakeLeadCallback.filter(F.act == MakeLeadAct.NO))(offer_declined)
    return router
