"""The built-in planner: a sensible plan when no LLM is configured, so everything runs offline.

Drafts are ready to send: they use what the owner wrote about the lead (where they met,
who referred them, what they need, what they asked) and word around what is unknown
(no company → no "your team" filler) instead of leaving `[placeholders]`. Each draft of
a lead takes the next of several angles, each with its own cadence, so Regenerate shows
a visibly different plan; the same lead at the same draft number always gets the same
plan. Every plan passes `check_steps` and the step length limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from activities.plan_brief import LeadBrief
from activities.plan_notes import LeadFacts, read_lead
from activities.plan_repair import truncate
from workflows.models import (
    DESCRIPTION_MAX,
    MIN_STEPS,
    SUGGESTED_TEXT_MAX,
    TIMING_MAX,
    PlanStep,
    check_steps,
)

__all__ = ["ANGLES", "Angle", "builtin_plan"]

# What a touch says: (action_type, description, suggested_text, time of day).
Touch = tuple[str, str, str, str]
Writer = Callable[["_Lead"], Touch]


@dataclass(frozen=True)
class Angle:
    """One way to work a lead: its touches in order, and the cadences it may run at."""

    name: str
    touches: Sequence[Writer]
    cadences: Sequence[Sequence[int]]


def _sentence(text: str) -> str:
    return text if text.endswith(("…", ".", "!", "?")) else f"{text}."


class _Lead:
    """The facts, with the phrases every touch needs worded for what is known."""

    def __init__(self, facts: LeadFacts) -> None:
        self.f = facts
        self.hi = f"Hi {facts.first_name}," if facts.first_name else "Hi,"
        self.who = facts.full_name or "the prospect"
        role = f" ({facts.title})" if facts.title else ""
        self.at_company = f" at {facts.company}" if facts.company else ""
        self.who_full = f"{self.who}{role}{self.at_company}"
        self.help_them = f"help {facts.company}" if facts.company else "help"
        self.notes = truncate(facts.notes, 160)

    def mention(self, angle: int) -> str:
        """The opening lines: what the owner knows about the lead, said to the prospect."""
        f = self.f
        lines: list[str] = []
        if f.referrer:
            lines.append(f"{f.referrer} suggested I get in touch.")
        if f.place:
            if f.met_in_person:
                met = ("It was good to meet you", "Great to have met you", "Since we met")
            else:
                met = (
                    "Thanks again for our conversation",
                    "Good to have talked",
                    "Since we talked",
                )
            lines.append(
                f"{met[angle]} {f.place}{',' if angle == 2 else '.'}"
                + (" I wanted to follow up while it's fresh." if angle == 2 else "")
            )
        if f.question:
            lines.append(f"You asked, “{f.question}” — happy to help with that.")
        if f.need:
            lines.append(
                (
                    _sentence(
                        f"You mentioned {f.need}, and I had a couple of ideas that could "
                        + self.help_them
                    ),
                    f"I understand {f.need}, so I'll keep this short and practical.",
                    f"I know {f.need}, and I think we could make that easier.",
                )[angle]
            )
        if f.promise:
            lines.append(_sentence(f"As promised, here is {f.promise}"))
        if f.note:
            lines.append(_sentence(f"Following up on our conversation: {f.note}"))
        if lines and angle == 0 and f.company and f.company not in " ".join(lines):
            lines.append(
                f"I'd love to hear what's at the top of the list at {f.company} this quarter."
            )
        if not lines:
            if f.company:
                lines.append(
                    f"I've been following what {f.company} is working on and had an idea "
                    "that could be useful to you."
                )
            else:
                lines.append("I had an idea that could be useful to you.")
            lines.append("I'd love to hear what's at the top of your list this quarter.")
        return " ".join(lines)

    def call_notes(self) -> str:
        return f"\nYour notes: {self.notes}" if self.notes else ""

    def email(self, *paragraphs: str, sign: str = "Best regards") -> str:
        return "\n\n".join([self.hi, *paragraphs, sign])


# ---- angle 1: helpful follow-up (the classic six touches) ----


def _intro(x: _Lead) -> Touch:
    return (
        "email",
        f"Send {x.who_full} a short, personal intro email with one clear ask.",
        x.email(x.mention(0), "Would a 15-minute call next week be useful?"),
        "morning in their time zone",
    )


def _connect(x: _Lead) -> Touch:
    f = x.f
    if f.place and f.met_in_person:
        text = f"{x.hi} good to meet you {f.place} — I'd be glad to stay in touch here."
    elif f.company:
        text = f"{x.hi} I enjoy following what {f.company} is doing and would be glad to connect."
    else:
        text = f"{x.hi} I sent you a short email and would be glad to connect here too."
    return (
        "linkedin",
        f"Connect with {x.who} on LinkedIn with a short, personal note.",
        text,
        "any time",
    )


def _idea(x: _Lead) -> Touch:
    f = x.f
    where = f" for {f.company}" if f.company else ""
    return (
        "email",
        f"Follow up with something useful{where}: one practical idea, no sales pitch.",
        x.email(
            (f"Since {f.need}, one thing" if f.need else "One thing")
            + " worth settling early is what a good result looks like after the first month, "
            "and who needs to see it. Teams that agree on that up front decide faster and "
            "with fewer surprises.",
            "I'm happy to share how others have approached it. Worth a quick chat?",
            sign="Best",
        ),
        "mid-morning",
    )


def _call(x: _Lead) -> Touch:
    f = x.f
    after = f" after we met {f.place}" if f.place and f.met_in_person else ""
    focus = f.company or "them"
    return (
        "call",
        f"Call {x.who} to ask about priorities; leave a short voicemail if needed.",
        f"Opener: “{x.hi} I'm following up on the email I sent{after}. Do you have two minutes?”"
        f"\nAsk: what's top of the list for {focus} this quarter, what a good outcome would "
        "look like, and who else is involved."
        + x.call_notes()
        + f"\nVoicemail: “{x.hi} following up on my email — I'll send a short note too. Talk soon.”",
        "late morning or early afternoon",
    )


def _story(x: _Lead) -> Touch:
    f = x.f
    similar = f"in a similar spot to {f.company}" if f.company else "in a similar spot"
    return (
        "email",
        "Offer a short walkthrough of how a team in a similar situation approached it.",
        x.email(
            f"A team we worked with recently was {similar}. I can walk you through what they "
            "tried first, what worked and what they would do differently — 15 minutes is enough.",
            "Would Tuesday or Thursday work?",
            sign="Best",
        ),
        "morning",
    )


def _breakup(x: _Lead) -> Touch:
    at = f" at {x.f.company}" if x.f.company else ""
    return (
        "email",
        "Send a polite breakup email that closes the loop and leaves the door open.",
        x.email(
            "I haven't heard back, so I'll assume the timing isn't right and stop following up "
            f"for now. If things change{at}, just reply to this email — happy to help.",
            sign="All the best",
        ),
        "morning",
    )


# ---- angle 2: one good question, then more channels early ----


def _question(x: _Lead) -> Touch:
    return (
        "email",
        f"Email {x.who_full} one focused question about their priorities.",
        x.email(
            x.mention(1),
            "One quick question before I send anything else: what would a great outcome look "
            f"like for you{x.at_company} in the next three months? A one-line reply is plenty.",
        ),
        "morning in their time zone",
    )


def _quick_call(x: _Lead) -> Touch:
    return (
        "call",
        "Call while your question is fresh; two minutes, no pitch.",
        f"Opener: “{x.hi} I emailed you a quick question yesterday — do you have two minutes?”"
        "\nAsk: what a great outcome would look like, and what happens if nothing changes."
        + x.call_notes()
        + f"\nVoicemail: “{x.hi} I sent you one short question by email; a one-line reply is plenty.”",
        "late morning",
    )


def _connect_softly(x: _Lead) -> Touch:
    return (
        "linkedin",
        f"Connect with {x.who} on LinkedIn; no pitch in the note.",
        f"{x.hi} I reached out by email as well — glad to connect here, no need to reply.",
        "any time",
    )


def _checklist(x: _Lead) -> Touch:
    return (
        "email",
        "Send a three-question checklist they can use whether or not they buy.",
        x.email(
            (f"Since {x.f.need}, here" if x.f.need else "Here")
            + " is a short checklist that helps with decisions like this:"
            "\n• What does success look like in 90 days?\n• Who needs to agree?"
            "\n• What is the smallest first step?",
            "If it's useful, I can go through it with you in 15 minutes.",
            sign="Best",
        ),
        "mid-morning",
    )


def _nudge(x: _Lead) -> Touch:
    return (
        "linkedin_message",
        "A short LinkedIn message pointing to the checklist.",
        f"{x.hi} did my checklist reach you? Happy to send the short version here if that's easier.",
        "any time",
    )


def _last_call(x: _Lead) -> Touch:
    return (
        "call",
        "One last call: ask whether the timing is right, and if not, when to come back.",
        f"Opener: “{x.hi} just checking whether the checklist I sent was useful.”"
        "\nAsk: is now a good time to look at this, and if not, when should I come back?"
        + x.call_notes()
        + f"\nVoicemail: “{x.hi} a quick follow-up on my last email — no rush, talk soon.”",
        "early afternoon",
    )


def _later(x: _Lead) -> Touch:
    return (
        "email",
        "Close the loop kindly and let them pick a month to hear from you again.",
        x.email(
            "I don't want to crowd your inbox, so this is my last note for now. If the timing "
            "is better later, just reply with a month and I'll get back to you then.",
            sign="Best wishes",
        ),
        "morning",
    )


# ---- angle 3: straight to a meeting, fewer touches ----


def _meeting(x: _Lead) -> Touch:
    return (
        "email",
        f"Ask {x.who_full} directly for a 20-minute call, offering two times.",
        x.email(
            x.mention(2),
            f"I'd suggest a 20-minute call to see whether we can {x.help_them}: would Tuesday "
            "at 10:00 or Thursday at 15:00 work? If neither fits, send me a time that does.",
        ),
        "morning in their time zone",
    )


def _connect_after_meeting_ask(x: _Lead) -> Touch:
    return (
        "linkedin",
        f"Connect with {x.who} on LinkedIn while the meeting request is open.",
        f"{x.hi} I suggested a short call by email — happy to connect here in the meantime.",
        "any time",
    )


def _booking_call(x: _Lead) -> Touch:
    return (
        "call",
        "Call to book the meeting directly; propose the two times from your email.",
        f"Opener: “{x.hi} I emailed you two times for a short call — could one of them work?”"
        "\nAsk: if not now, what would make a call worth their time."
        + x.call_notes()
        + f"\nVoicemail: “{x.hi} calling about the short meeting I suggested — reply with any "
        "time that suits you.”",
        "late morning or early afternoon",
    )


def _options(x: _Lead) -> Touch:
    return (
        "email",
        "Make the next step easy: offer three simple ways forward.",
        x.email(
            "To make it easy, here are three ways we could go from here:"
            "\n1. A 20-minute call to see if there's a fit."
            "\n2. A short written summary you can pass on to colleagues."
            "\n3. Nothing for now — just tell me and I'll close the loop.",
            "Which works best?",
            sign="Best",
        ),
        "mid-morning",
    )


def _close(x: _Lead) -> Touch:
    return (
        "email",
        "Close the loop politely; leave the door open.",
        x.email(
            "I'll close the loop on my side for now. Whenever it makes sense to talk, just "
            "reply here and we'll pick it up from there.",
            sign="All the best",
        ),
        "morning",
    )


ANGLES: tuple[Angle, ...] = (
    Angle(
        "helpful follow-up",
        (_intro, _connect, _idea, _call, _story, _breakup),
        ((0, 2, 5, 9, 14, 21), (0, 3, 7, 12, 18, 26)),
    ),
    Angle(
        "one good question",
        (_question, _quick_call, _connect_softly, _checklist, _nudge, _last_call, _later),
        ((0, 1, 3, 7, 12, 18, 28), (0, 2, 4, 8, 13, 20, 30)),
    ),
    Angle(
        "straight to a meeting",
        (_meeting, _connect_after_meeting_ask, _booking_call, _options, _close),
        ((0, 3, 7, 14, 30), (0, 2, 6, 12, 21)),
    ),
)


def _compose(lead: _Lead, draft: int) -> list[PlanStep]:
    """The plan for the lead's `draft`-th draft (0-based): angles in turn, then cadences."""
    index = draft % len(ANGLES)
    angle = ANGLES[index]
    cadence = angle.cadences[(draft // len(ANGLES)) % len(angle.cadences)]
    steps = []
    for number, (writer, delay) in enumerate(zip(angle.touches, cadence, strict=True), 1):
        action, description, text, when = writer(lead)
        steps.append(
            PlanStep(
                step_id=number,
                action_type=action,
                description=truncate(description, DESCRIPTION_MAX),
                suggested_text=truncate(text, SUGGESTED_TEXT_MAX),
                timing=truncate(f"Day {delay} · {when}", TIMING_MAX),
                delay_days=delay,
            )
        )
    return check_steps(steps, min_steps=MIN_STEPS)


def _texts(steps: Sequence[Any]) -> list[str]:
    out = []
    for step in steps:
        text = step.get("suggested_text") if isinstance(step, dict) else None
        out.append(text if isinstance(text, str) else "")
    return out


def builtin_plan(brief: LeadBrief) -> list[PlanStep]:
    """The plan for this lead's current draft; same lead and draft number, same plan.

    A plan with the same messages as the one the mirror holds (a mirror lagging behind)
    is skipped for the next angle, so a redraft never looks unchanged.
    """
    lead = _Lead(read_lead(brief))
    draft = brief.draft_number - 1
    plan = _compose(lead, draft)
    previous = brief.engagement_plan or []
    if previous and _texts(previous) == [s.suggested_text for s in plan]:
        plan = _compose(lead, draft + 1)
    return plan
