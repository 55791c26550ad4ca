"""Every word a user reads, from the bot, the send activities and the Mini App.

One file on purpose (past ~500 lines): whoever edits the product's wording finds all of
it here, section by section, and the bot and the Mini App say the same thing for the
same event. Logic stays with the callers; this file only formats.

All chat text is Telegram HTML: every user- or LLM-supplied string goes through `clip`,
which escapes it and keeps the escaped form within a length budget, so a message
never exceeds 4096 characters and never breaks the HTML parser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Protocol
from zoneinfo import ZoneInfo

from storage.lead_views import LeadTimeline, MirroredPlanStatus, PlanSummaryRow
from storage.models import CLOSED_LEAD_STATUSES, Lead, LeadStatus, User
from workflows.errors import Rejection
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

# The bot's command menu (setMyCommands), in the order Telegram shows it.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("add", "Add a lead"),
    ("leads", "Your leads and their plans"),
    ("settings", "Timezone, send window, workdays"),
    ("timezone", "Set your timezone, e.g. Europe/Berlin"),
    ("window", "Set the send window, e.g. 09:00-18:00"),
    ("workdays", "Reminders on workdays only: on|off"),
    ("pause", "Pause all plans [days]"),
    ("resume", "Resume all plans"),
    ("cancel", "Leave the current dialog"),
    ("help", "What I can do"),
)
MENU_BUTTON = "📋 Pipeline"
WELCOME = "👋 Welcome! You're registered.\n\n" + HELP

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


def counted(n: int, word: str) -> str:
    """ "1 plan", "3 plans"."""
    return f"{n} {word}" + ("" if n == 1 else "s")


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


# ---- refusals and failures: what a tap or a Mini App action hears when it did not apply ----

ANSWER_LIMIT = 200  # Telegram's limit for a callback answer

# What the owner reads for each typed refusal of the workflow (workflows/errors.py).
REJECTION_TEXT: dict[Rejection, str] = {
    Rejection.ALREADY_HANDLED: "Already handled",
    Rejection.PLAN_FINISHED: "Already handled: the plan has finished",
    Rejection.NOT_DUE: "That step isn't due yet; nothing was changed",
    Rejection.NOT_STARTED: "The plan hasn't started yet: press ▶️ Start plan first",
    Rejection.WRONG_STATUS: "Not possible in the plan's current state; nothing was changed",
    Rejection.BUSY: "A new plan is being drafted; try again once it arrives",
    Rejection.LEAD_CLOSED: "This lead is closed. Reopen it (🏷 Change status) to plan again",
    Rejection.INVALID: "That doesn't fit this plan; nothing was changed",
    Rejection.DRAFT_FAILED: "The planner couldn't draft a plan; try 🔄 Regenerate again",
}
NO_WORKER = "⏳ Taking longer than usual; the plan will catch up, check it in a minute"
OVERLOADED = "⏳ Very busy right now; nothing was changed. Please tap again in a moment"
UNREACHABLE = "⏳ The planner is unreachable right now; please try again in a moment"
FAILED = "⚠️ That didn't work; nothing was changed. Please try again"
LEAD_CLOSED = REJECTION_TEXT[Rejection.LEAD_CLOSED] + "."
# Any update that failed in a handler (bot/failures.py): transient, or a bug of ours.
TRY_AGAIN = "⏳ I can't reach my database or planner right now. Please try again in a moment."
BROKEN = "⚠️ Something went wrong on my side; nothing was changed. Please try again."
# A tap whose handler is held up: the edited message shows the outcome later.
STILL_WORKING = "⏳ Still working on it; the message will show the result."
UNKNOWN_BUTTON = "This button is no longer valid."


class Refusal(Protocol):
    """What a refused action carries (services.plans.ActionRejected; not imported here,
    presentation depends on no service)."""

    kind: Rejection | None
    unreachable: bool
    pending: bool
    busy: bool


def rejection_text(err: Refusal) -> str:
    """What a refused or unreachable action hears; a stale or double tap always starts
    with "Already handled"."""
    if err.pending:  # accepted, but no worker took it in time
        text = NO_WORKER
    elif err.busy:  # not sent: too many actions in flight
        text = OVERLOADED
    elif err.kind is not None:
        text = REJECTION_TEXT[err.kind]
    elif err.unreachable:
        text = UNREACHABLE
    else:  # an untyped failure of the update: say so rather than guess
        text = FAILED
    return text[:ANSWER_LIMIT]


def already_handled(plan_status: str) -> str:
    return f"Already handled: plan is {plan_status}"


PLAN_GONE = "Already handled: this plan is gone"
PLAN_REPLACED = "Already handled: this plan was replaced"
PLAN_NOT_RUNNING = "Already handled: the plan is not running"


# ---- after an owner's action: the answer and the edited reminder (bot and Mini App) ----


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


def step_done() -> tuple[str, str]:
    """(the edited reminder's outcome line, the short answer) for Done."""
    return "✅ Done.", "Marked done ✅"


def step_skipped() -> tuple[str, str]:
    return "⏭ Skipped.", "Skipped ⏭"


def step_snoozed(days: int) -> tuple[str, str]:
    unit = "day" if days == 1 else "days"
    return f"💤 Snoozed {days} {unit}.", f"Snoozed {days} {unit} 💤"


STOPPED_NO_MORE = "🛑 Plan stopped. No more reminders for this lead."
STOPPED = "Plan stopped 🛑"
STOPPED_SHORT = "Plan stopped"
PAUSED = "Paused ⏸"
RESUMED = "Resumed ▶️"
DRAFTING = "Drafting a new plan… it arrives as a new message"
DRAFTING_SHORT = "Drafting a new plan…"
PLAN_STARTED = "Plan started ▶️"
DISCARDED = "Discarded"


def stopped_reminder(lead: Lead) -> str:
    """A reminder after Stop plan was tapped on it."""
    return f"<b>{lead_label(lead.prospect_name, lead.prospect_company)}</b>\n\n{STOPPED_NO_MORE}"


def full_draft(draft: str) -> str:
    return f"📄 <b>Full draft</b>\n<blockquote>{clip(draft, MESSAGE_LIMIT - 100)}</blockquote>"


def plan_started(
    lead: Lead, state: PlanState, paused: PlanState | None, paused_until: datetime | None, tz: str
) -> str:
    """The drafted plan's message after Start plan: the plan, what comes next, a vacation."""
    footer = f"\n\n▶️ <b>Plan started.</b> {next_phrase(paused or state)}"
    if paused is not None:
        footer += f"\n⏸ Paused until {when(paused_until, tz)} (/pause)."
    body = plan_text(lead.prospect_name, lead.prospect_company, state)
    if len(body) + len(footer) > MESSAGE_LIMIT:
        label = lead_label(lead.prospect_name, lead.prospect_company)
        body = f"📋 Engagement plan for {label}: {len(state.steps)} steps"
    return body + footer


def plan_redrafting(lead: Lead) -> str:
    label = lead_label(lead.prospect_name, lead.prospect_company)
    return f"🔄 Drafting a new plan for {label}… it arrives as a new message."


def plan_discarded(lead: Lead) -> str:
    return f"🗑 Plan for {lead_label(lead.prospect_name, lead.prospect_company)} discarded."


def status_changed(previous: LeadStatus, status: LeadStatus, *, stopped: bool, chat: bool) -> str:
    """The answer to a status change; closing a lead stops its plan (at once, or as soon
    as Temporal is reachable again: `stopped` False)."""
    if previous == status:
        return f"Already {status.value}"
    text = f"Status: {status.value}"
    if status in CLOSED_LEAD_STATUSES and previous not in CLOSED_LEAD_STATUSES:
        if stopped:
            text += "; plan stopped"
        elif chat:
            text += "; the planner is unreachable, the plan will stop shortly"
        else:
            text += "; the plan stops as soon as it can"
    return text


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


def status_menu(lead: Lead) -> str:
    return f"Choose the new status for <b>{clip(lead.prospect_name, 80)}</b>:"


def settings_problem(problem: str) -> str:
    """A schedule change the workflow's `Schedule` model refused."""
    return f"⚠️ {clip(problem, 300)}. Nothing was changed."


def settings_saved(user: User) -> str:
    return "✅ Saved.\n\n" + settings_text(user)


APPLYING = "⏳ Applying to your running plans…"
TIMEZONE_USAGE = "Usage: /timezone Europe/Berlin (an IANA timezone name)"
WINDOW_USAGE = "⚠️ Usage: /window 09:00-18:00. Nothing was changed."
WORKDAYS_USAGE = "⚠️ Usage: /workdays on|off. Nothing was changed."


def unknown_timezone(raw: str, suggestions: list[str]) -> str:
    hint = (
        "did you mean " + " or ".join(f"<code>{s}</code>" for s in suggestions) + "?"
        if suggestions
        else "use an IANA name like Europe/Berlin."
    )
    return f"⚠️ unknown timezone '{clip(raw, 64)}'; {hint} Nothing was changed."


def pause_usage(max_days: int) -> str:
    return f"⚠️ Usage: /pause [days], days 1–{max_days}."


def pause_span(until: datetime | None, tz: str) -> str:
    return f" until {when(until, tz)}" if until else " until you send /resume"


def pausing(span: str) -> str:
    return f"⏳ Pausing your plans{span}…"


RESUMING = "⏳ Resuming your plans…"


# ---- background jobs over all plans (/timezone, /window, /workdays, /pause, /resume) ----

BULK_REPLACED = "↪️ Replaced by your newer change."


def bulk_progress(done: int, total: int) -> str:
    return f"⏳ Working on it: {done} of {total} leads…"


def bulk_result(action: str, applied: int, span: str) -> str:
    if action == "set_schedule":
        return f"Applied to {counted(applied, 'running plan')}."
    if action == "pause":
        return f"⏸ Paused {counted(applied, 'plan')}{span}."
    return f"▶️ Resumed {counted(applied, 'plan')}."


def welcome_back(resumed: list[Lead]) -> str:
    """An owner who had blocked the bot is back: their held plans run again."""
    names = ", ".join(lead_label(x.prospect_name, x.prospect_company) for x in resumed)
    return (
        f"▶️ Welcome back! Reminders could not reach you, so I had held "
        f"{counted(len(resumed), 'plan')}; resumed now: {names}."
    )


# ---- adding a lead: /add and "make a lead of this?" ----

ASK_NAME = "Who is the lead? Send their name. (/cancel to stop)"
ASK_CONTEXT = "What do you know about them — where you met, what they need? (send - to skip)"
NEEDS_TEXT = "Please answer with text, or /cancel to stop adding the lead."
OFFER_EXPIRED = "That offer has expired; send the text again or use /add."
OFFER_ACCEPTED_ASK_NAME = "📥 OK. " + ASK_NAME
OFFER_DECLINED = "OK, I'll leave it. Send /help to see what I can do."
UNKNOWN_COMMAND = "I don't know that command. Send /help to see what I can do."


def cancelled(had_dialog: bool) -> str:
    return "Cancelled." if had_dialog else "Nothing to cancel."


def ask_company(name: str) -> str:
    return f"Company of {clip(name, 80)}? (send - to skip)"


def too_long_note(length: int, kept: int) -> str:
    return f"✂️ That note has {length} characters; I keep the first {kept} as the lead's context."


def make_lead_question(who: str | None) -> str:
    return f"Make a lead of this message from {clip(who, 80)}?" if who else "Make a lead of this?"


def making_lead(name: str) -> str:
    return f"📥 Making a lead of {clip(name, 80)}."


def drafting_for(lead: Lead) -> str:
    return f"⏳ Drafting a plan for {lead_label(lead.prospect_name, lead.prospect_company)}…"


def saved_but_unreachable(lead: Lead) -> str:
    label = lead_label(lead.prospect_name, lead.prospect_company)
    return (
        f"💾 Saved {label}, but the planner is unreachable right now. In a moment, open "
        "the lead in /leads and tap 🔄 Regenerate plan."
    )


# ---- the Mini App's answers (plain text, shown by the page; webapp/) ----

APP_UNREACHABLE = "The planner is unreachable right now; try again in a moment"
APP_DRAFTING = "Drafting a new plan… it arrives in the chat to approve"


def app_saved(applied: int) -> str:
    return f"Saved; {counted(applied, 'running plan')} moved"


def app_paused(applied: int) -> str:
    return f"Paused {counted(applied, 'running plan')} ⏸"


def app_resumed(applied: int) -> str:
    return f"Resumed {counted(applied, 'running plan')} ▶️"
