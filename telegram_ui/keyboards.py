"""Every inline keyboard: on reminders and drafted plans (sent by the worker) and on the
bot's own screens (leads list, lead detail, status menu, "make a lead of this?")."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo
from aiogram.utils.keyboard import InlineKeyboardBuilder

from storage.lead_views import FINISHED, MirroredPlanStatus
from storage.models import CLOSED_LEAD_STATUSES, Lead, LeadStatus
from telegram_ui.callbacks import (
    LeadAct,
    LeadCallback,
    LeadsPage,
    LeadStatusCallback,
    MakeLeadAct,
    MakeLeadCallback,
    PlanAct,
    PlanCallback,
    StepAct,
    StepCallback,
)
from workflows.models import StepState


def miniapp_button(lead_id: int | None = None) -> InlineKeyboardButton | None:
    """ "📋 Open pipeline": the Mini App (at the lead, if given), when MINIAPP_URL is set."""
    from settings import MiniAppLink

    url = MiniAppLink().url
    if url is None:
        return None
    if lead_id is not None:
        url += ("&" if "?" in url else "?") + f"lead={lead_id}"
    return InlineKeyboardButton(text="📋 Open pipeline", web_app=WebAppInfo(url=url))


# ---- sent by the worker ----


def reminder_keyboard(lead_id: int, version: int, step: StepState) -> InlineKeyboardMarkup:
    def button(text: str, act: StepAct) -> InlineKeyboardButton:
        data = StepCallback(act=act, lead_id=lead_id, version=version, step_id=step.step_id)
        return InlineKeyboardButton(text=text, callback_data=data.pack())

    rows = [
        [button("✅ Done", StepAct.DONE), button("⏭ Skip", StepAct.SKIP)],
        [button("💤 Snooze 1d", StepAct.SNOOZE_1D), button("💤 Snooze 3d", StepAct.SNOOZE_3D)],
    ]
    last = [button("🛑 Stop plan", StepAct.STOP_PLAN)]
    if step.suggested_text:  # the whole draft as its own message, easy to copy
        last.insert(0, button("📄 Full draft", StepAct.FULL_DRAFT))
    rows.append(last)
    app = miniapp_button(lead_id)
    if app is not None:
        rows.append([app])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _plan_button(text: str, act: PlanAct, lead_id: int, version: int) -> InlineKeyboardButton:
    data = PlanCallback(act=act, lead_id=lead_id, version=version)
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def plan_ready_keyboard(lead_id: int, version: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_plan_button("▶️ Start plan", PlanAct.START, lead_id, version)],
            [
                _plan_button("🔄 Regenerate", PlanAct.REGENERATE, lead_id, version),
                _plan_button("🗑 Discard", PlanAct.DISCARD, lead_id, version),
            ],
        ]
    )


def plan_failed_keyboard(lead_id: int, version: int, running: bool) -> InlineKeyboardMarkup:
    """Try the draft again; Discard only when there is no running plan it would stop."""
    row = [_plan_button("🔄 Regenerate", PlanAct.REGENERATE, lead_id, version)]
    if not running:
        row.append(_plan_button("🗑 Discard", PlanAct.DISCARD, lead_id, version))
    return InlineKeyboardMarkup(inline_keyboard=[row])


# ---- the bot's own screens ----


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
