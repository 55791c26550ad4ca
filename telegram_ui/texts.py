"""Every message text the bot and the send activities write, and its formatting.

All text is Telegram HTML: every user- or LLM-supplied string goes through `clip`,
which escapes it and keeps the escaped form within a length budget, so a message
never exceeds 4096 characters and never breaks the HTML parser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from zoneinfo import ZoneInfo

from storage.lead_views import LeadTimeline, MirroredPlanStatus, PlanSummaryRow
from storage.models import Lead, User
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

HELP = (
    "<b>LeadPilot</b> keeps your follow-ups on track.\n\n"
    "/add — add a lead (or just send or forward me a message about them)\n"
    "/leads — your leads, their plans and what is due\n"
    "/settings — timezone, send window, workdays\n"
    "/timezone Europe/Berlin · /window 09:00-18:00 · /workdays on|off\n"
    "/pause [days] · /resume — a vacation for all plans\n"
    "/cancel — leave the current dialog"
)

NOT_YOURS = "That lead isn't yours."

STATUS_MARK = {
    StepStatus.COMPLETED: "✅",
    StepStatus.SKIPPED: "⏭",
    StepStatus.CANCELLED: "✖️",
    StepStatus.SENT: "🔔",
    StepStatus.PENDING: "•",
}

PLAN_STATUS_LABEL = {
    PlanStatus.AWAITING_APPROVAL: "📝 awaiting approval",
    PlanStatus.ACTIVE: "▶️ active",
    PlanStatus.PAUSED: "⏸ paused",
    PlanStatus.BLOCKED: "⚠️ blocked",
    PlanStatus.COMPLETED: "🏁 completed",
    PlanStatus.CANCELLED: "🛑 stopped",
}
MIRROR_STATUS_LABEL = {MirroredPlanStatus(k.value): v for k, v in PLAN_STATUS_LABEL.items()}


# ---- building blocks ----


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


def when(moment: datetime | None, tz: str) -> str:
    """A due time in the owner's timezone, e.g. "Tue 02 Dec 09:00"."""
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")


def due_phrase(status: str | None, due_at: datetime | None, now: datetime, day_seconds: int) -> str:
    """ "due in 3 days", "due today" or "❗ overdue" in plan days (compressed in demos),
    for a mirrored step."""
    if due_at is None:
        return "not scheduled"
    left = (due_at - now).total_seconds()
    if status == StepStatus.SENT or left < 0:
        return "❗ overdue"
    n = int(left // day_seconds)
    if n == 0:
        return "due today"
    return f"due in {n} day" + ("" if n == 1 else "s")


# ---- what the worker sends: reminders, drafted plans, notices ----


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


# ---- after an owner's action (bot and Mini App) ----


def next_phrase(state: PlanState) -> str:
    """What comes next after an owner action, for the edited reminder."""
    if state.status == PlanStatus.COMPLETED:
        return "That was the last step — plan complete 🎉"
    if state.status == PlanStatus.CANCELLED:
        return "Plan stopped."
    cur = state.current
    if cur is None:
        return "Nothing else is scheduled."
    step = f"step {state.position(cur.step_id)} of {len(state.steps)}"
    text = f"Next: {step} on {when(cur.due_at, state.schedule.timezone)}"
    if state.status == PlanStatus.PAUSED:
        text += " (plan paused)"
    return text


def reminder_outcome(
    lead: Lead, state: PlanState, step_id: int, outcome: str, *, show_next: bool = True
) -> str:
    """The reminder after an action: which step, what happened, what comes next."""
    step = state.step(step_id)
    head = f"<b>{lead_label(lead.prospect_name, lead.prospect_company)}</b>"
    lines = [head]
    if step is not None:
        lines.append(
            f"Step {state.position(step_id)} of {len(state.steps)} · "
            f"{clip(step.action_type, 32)} — {clip(step.description, 400)}"
        )
    lines += ["", outcome]
    if show_next:
        lines.append(next_phrase(state))
    return "\n".join(lines)


# ---- the bot's screens: /leads, a lead, /settings ----


def lead_line(n: int, row: PlanSummaryRow, now: datetime, day_seconds: int) -> str:
    lead = row.lead
    label = lead_label(lead.prospect_name, lead.prospect_company)
    parts = [f"{n}. <b>{label}</b> · {lead.status.value}"]
    if row.plan_status is None:
        parts.append("no plan")
    else:
        parts.append(MIRROR_STATUS_LABEL[row.plan_status])
        if row.current_position is not None and row.plan_status in (
            MirroredPlanStatus.ACTIVE,
            MirroredPlanStatus.PAUSED,
        ):
            due = due_phrase(row.current_status, row.current_due_at, now, day_seconds)
            parts.append(f"next: step {row.current_position} of {row.steps} {due}")
    return " · ".join(parts)


def leads_page(
    rows: list[PlanSummaryRow], page: int, pages: int, page_size: int, day_seconds: int
) -> str:
    if not rows:
        return "You have no leads yet. Send /add to add one."
    now = datetime.now(UTC)
    lines = [f"📇 <b>Your leads</b> (page {page + 1} of {pages})", ""]
    lines += [
        lead_line(page * page_size + i, row, now, day_seconds) for i, row in enumerate(rows, 1)
    ]
    return "\n".join(lines)


def lead_detail(
    view: LeadTimeline, tz: str, day_seconds: int, *, cancel_pending: bool = False
) -> str:
    """The lead with its plan timeline: ✅ done, ⏭ skipped, due in N days, ❗ overdue."""
    lead = view.lead
    lines = [f"👤 <b>{lead_label(lead.prospect_name, lead.prospect_company)}</b>"]
    if lead.prospect_title:
        lines.append(clip(lead.prospect_title, 100))
    lines.append(f"Status: <b>{lead.status.value}</b>")
    if lead.original_context:
        lines.append(f"<i>{clip(lead.original_context, 300)}</i>")
    lines.append("")
    if cancel_pending:
        lines.append("⏳ Stopping the plan: it will stop shortly.")
    if view.plan_status is None:
        lines.append("No plan is running for this lead.")
        return "\n".join(lines)
    lines.append(f"Plan v{lead.plan_version}: {MIRROR_STATUS_LABEL[view.plan_status]}")
    now = datetime.now(UTC)
    current = view.current
    drafting = view.plan_status == MirroredPlanStatus.AWAITING_APPROVAL
    for pos, step in enumerate(view.steps, 1):
        desc = (
            f"{pos}. {clip(step.action_type or 'step', 32)} — {clip(step.description or '', 120)}"
        )
        if step.is_open and not drafting and view.running:
            due = due_phrase(step.status.value, step.due_at, now, day_seconds)
            if current is not None and step.step_id == current.step_id:
                mark = "🔔" if step.status.value == "sent" else "⏳"
                desc = f"{mark} {desc} · {due} ({when(step.due_at, tz)})"
            else:
                desc = f"• {desc} · {due}"
        else:
            desc = f"{STATUS_MARK[StepStatus(step.status.value)]} {desc}"
        lines.append(desc)
    return "\n".join(lines)[:MESSAGE_LIMIT]


def settings_text(user: User) -> str:
    return (
        "⚙️ <b>Settings</b>\n"
        f"Timezone: <b>{clip(user.timezone, 64)}</b>\n"
        f"Send window: <b>{user.window_start:%H:%M}–{user.window_end:%H:%M}</b>\n"
        f"Workdays only: <b>{'on' if user.workdays_only else 'off'}</b>\n"
        + (
            f"Paused until: <b>{when(user.paused_until, user.timezone)}</b>\n"
            if user.paused_until
            else ""
        )
        + "\nChange with /timezone Europe/Berlin, /window 09:00-18:00, /workdays on|off."
    )
