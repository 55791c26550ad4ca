"""Inline keyboards of the bot's own screens (leads list, lead detail, status menu)."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import (
    LeadAct,
    LeadCallback,
    LeadsPage,
    LeadStatusCallback,
    MakeLeadAct,
    MakeLeadCallback,
)
from storage.lead_views import FINISHED, MirroredPlanStatus
from storage.models import CLOSED_LEAD_STATUSES, Lead, LeadStatus
from telegram_ui.render import miniapp_button


def leads_keyboard(leads: list[Lead], page: int, pages: int, first: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for i, lead in enumerate(leads, first):
        kb.row(
            InlineKeyboardButton(
                text=f"{i}. {lead.prospect_name[:40]}",
                callback_data=LeadCallback(act=LeadAct.OPEN, lead_id=lead.id).pack(),
            )
        )
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(text="◀️ Prev", callback_data=LeadsPage(page=page - 1).pack())
        )
    if page + 1 < pages:
        nav.append(
            InlineKeyboardButton(text="Next ▶️", callback_data=LeadsPage(page=page + 1).pack())
        )
    if nav:
        kb.row(*nav)
    app = miniapp_button()
    if app is not None:
        kb.row(app)
    return kb.as_markup()


def lead_keyboard(lead: Lead, plan: MirroredPlanStatus | None) -> InlineKeyboardMarkup:
    """A closed lead offers no plan actions: only a status change (reopening) and back."""

    def button(text: str, act: LeadAct) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=text, callback_data=LeadCallback(act=act, lead_id=lead.id).pack()
        )

    kb = InlineKeyboardBuilder()
    if plan is not None and plan not in FINISHED:
        row = []
        if plan == MirroredPlanStatus.ACTIVE:
            row.append(button("⏸ Pause", LeadAct.PAUSE))
        elif plan in (MirroredPlanStatus.PAUSED, MirroredPlanStatus.BLOCKED):
            row.append(button("▶️ Resume", LeadAct.RESUME))
        row.append(button("🛑 Stop plan", LeadAct.STOP))
        kb.row(*row)
    if lead.status in CLOSED_LEAD_STATUSES:
        kb.row(button("🏷 Change status (reopen)", LeadAct.STATUS_MENU))
    else:
        kb.row(
            button("🏷 Change status", LeadAct.STATUS_MENU),
            button("🔄 Regenerate plan", LeadAct.REGENERATE),
        )
    kb.row(InlineKeyboardButton(text="« Leads", callback_data=LeadsPage(page=0).pack()))
    return kb.as_markup()


def status_keyboard(lead: Lead) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for status in LeadStatus:
        mark = "• " if status == lead.status else ""
        kb.button(
            text=f"{mark}{status.value}",
            callback_data=LeadStatusCallback(lead_id=lead.id, status=status).pack(),
        )
    kb.adjust(2)
    kb.row(
        InlineKeyboardButton(
            text="« Back", callback_data=LeadCallback(act=LeadAct.OPEN, lead_id=lead.id).pack()
        )
    )
    return kb.as_markup()


def make_lead_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text="✅ Yes, make a lead",
                    callback_data=MakeLeadCallback(act=MakeLeadAct.YES).pack(),
                ),
                InlineKeyboardButton(
                    text="No", callback_data=MakeLeadCallback(act=MakeLeadAct.NO).pack()
                ),
            ]
        ]
    )
