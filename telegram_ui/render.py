"""Message texts and keyboards shared by the bot and the send activities.

All text is Telegram HTML: every user- or LLM-supplied string goes through `clip`,
which escapes it and keeps the escaped form within a length budget, so a message
never exceeds 4096 characters and never breaks the HTML parser.
"""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from telegram_ui.callbacks import PlanAct, PlanCallback, StepAct, StepCallback
from workflows.models import (
    NoticeKind,
    NoticeRequest,
    PlanState,
    PlanStatus,
    ReminderKind,
    StepState,
    StepStatus,
)

MESSAGE_LIMIT = 4096
DRAFT_PREVIEW = 600
PLAN_DRAFT_PREVIEW = 160


def clip(raw: str, limit: int) -> str:
    """Escape `raw` for HTML, cut so the escaped text is at most `limit` characters."""
    text = escape(raw, quote=False)
    if len(text) <= limit:
        return text
    lo, hi = 0, len(raw)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(escape(raw[:mid].rstrip(), quote=False)) + 1 <= limit:
            lo = mid
        else:
            hi = mid - 1
    return escape(raw[:lo].rstrip(), quote=False) + "…"


def lead_label(name: str, company: str | None) -> str:
    label = clip(name, 80)
    if company:
        label += f" ({clip(company, 80)})"
    return label


def reminder_text(
    name: str, company: str | None, step: StepState, position: int, total: int, kind: ReminderKind
) -> str:
    head = (
        "⏰ Follow-up due"
        if kind == ReminderKind.FIRST
        else f"🔔 Still open (reminder {step.reminder_count})"
    )
    lines = [
        f"<b>{head}</b> · {lead_label(name, company)}",
        f"<b>Step {position} of {total}</b> · {clip(step.action_type, 32)}",
        clip(step.description, 400),
    ]
    if step.suggested_text:
        lines += [
            "",
            "📝 <b>Draft</b>",
            f"<blockquote>{clip(step.suggested_text, DRAFT_PREVIEW)}</blockquote>",
        ]
    return "\n".join(lines)


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


def miniapp_button(lead_id: int | None = None) -> InlineKeyboardButton | None:
    """ "📋 Open pipeline": the Mini App (at the lead, if given), when MINIAPP_URL is set."""
    from settings import MiniAppLink

    url = MiniAppLink().url
    if url is None:
        return None
    if lead_id is not None:
        url += ("&" if "?" in url else "?") + f"lead={lead_id}"
    return InlineKeyboardButton(text="📋 Open pipeline", web_app=WebAppInfo(url=url))


def full_draft_text(step: StepState) -> str:
    return f"📄 <b>Full draft</b>\n<blockquote>{clip(step.suggested_text, MESSAGE_LIMIT - 100)}</blockquote>"


STATUS_MARK = {
    StepStatus.COMPLETED: "✅",
    StepStatus.SKIPPED: "⏭",
    StepStatus.CANCELLED: "✖️",
    StepStatus.SENT: "🔔",
    StepStatus.PENDING: "•",
}


def plan_text(name: str, company: str | None, state: PlanState) -> str:
    """The drafted plan: each step with its day, channel, description and a draft preview."""
    lines = [f"📋 <b>Engagement plan</b> for {lead_label(name, company)}", ""]
    for pos, step in enumerate(state.steps, 1):
        lines.append(
            f"<b>{pos}. Day {step.delay_days}</b> · {clip(step.action_type, 32)} — {clip(step.description, 200)}"
        )
        if step.suggested_text:
            lines.append(f"<i>{clip(step.suggested_text, PLAN_DRAFT_PREVIEW)}</i>")
    return "\n".join(lines)[:MESSAGE_LIMIT]


def plan_failed_keyboard(lead_id: int, version: int, running: bool) -> InlineKeyboardMarkup:
    """Try the draft again; Discard only when there is no running plan it would stop."""
    row = [_plan_button("🔄 Regenerate", PlanAct.REGENERATE, lead_id, version)]
    if not running:
        row.append(_plan_button("🗑 Discard", PlanAct.DISCARD, lead_id, version))
    return InlineKeyboardMarkup(inline_keyboard=[row])


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


def notice_text(req: NoticeRequest, name: str, company: str | None) -> str:
    label = lead_label(name, company)
    state = req.state
    match req.kind:
        case NoticeKind.PLAN_READY:
            return plan_text(name, company, state)
        case NoticeKind.PLAN_FAILED:
            reason = clip(state.last_error or "unknown error", 500)
            text = f"⚠️ Could not draft a plan for {label}: {reason}"
            if "Regenerate" not in reason:
                text += "\nTap 🔄 Regenerate to try again."
            if state.status != PlanStatus.AWAITING_APPROVAL:
                text += "\nYour current plan keeps running."
            return text
        case NoticeKind.AUTO_SNOOZED:
            cur = state.current
            pos = f"step {state.position(cur.step_id)}" if cur else "the current step"
            return (
                f"💤 No answer to {req.unanswered} reminders about {pos} for {label}. "
                f"Snoozed for {req.snooze_days} days; I'll remind you again then."
            )
        case NoticeKind.PLAN_COMPLETED:
            return f"🎉 All steps of the plan for {label} are done."
        case NoticeKind.PLAN_RESUMED:
            return f"▶️ The plan for {label} is running again."
