"""The built-in planner: a deterministic plan for when no LLM is configured."""

from __future__ import annotations

from activities.plan_brief import LeadBrief
from activities.plan_repair import truncate
from workflows.models import (
    DESCRIPTION_MAX,
    MIN_STEPS,
    SUGGESTED_TEXT_MAX,
    TIMING_MAX,
    PlanStep,
    check_steps,
)

__all__ = ["builtin_plan"]


def _name_part(value: str, limit: int) -> str:
    return truncate(" ".join(value.split()), limit)


def builtin_plan(brief: LeadBrief) -> list[PlanStep]:
    """A sensible six-touch sequence for when no LLM is configured; same lead, same plan."""
    full_name = _name_part(brief.prospect_name, 60)
    first = truncate(full_name.split(" ")[0], 30) if full_name else ""
    hi = f"Hi {first}," if first else "Hi,"
    who = full_name or "the prospect"
    company = _name_part(brief.prospect_company, 60)
    title = _name_part(brief.prospect_title, 60)
    at_company = f" at {company}" if company else ""
    their_team = company or "your team"
    role = f" ({title})" if title else ""

    rows: list[tuple[str, int, str, str, str]] = [
        (
            "email",
            0,
            f"Send {who}{role}{at_company} a short, personalised intro email with one clear ask.",
            f"{hi}\n\nI've been looking into what {their_team} is working on and had an idea "
            "that might help: we help teams like yours save time on [problem], and I'd love "
            "to hear how you handle it today.\n\nWould a "
            "15-minute call next week be useful?\n\nBest regards,\n[your name]",
            "Day 0 · morning in their time zone",
        ),
        (
            "linkedin",
            2,
            f"Connect with {who} on LinkedIn with a short, personal note.",
            f"{hi} great to be in touch. I work with teams like {their_team} and share "
            "practical ideas on how they grow — happy to connect.",
            "Day 2 · any time",
        ),
        (
            "email",
            5,
            f"Follow up with something useful for {their_team}: an insight, article or idea.",
            f"{hi}\n\nI came across [insight or resource] and thought of {their_team} — "
            "it shows how similar teams [result]. The short version: [one-line takeaway]."
            "\n\nWorth a quick chat to see if it applies to you?\n\nBest,\n[your name]",
            "Day 5 · mid-morning",
        ),
        (
            "call",
            9,
            f"Call {who} to ask about priorities; leave a short voicemail if needed.",
            f"Opener: \"{hi} it's [your name] from [your company] — I sent a "
            "couple of notes about [topic]. Do you have two minutes?\"\nAsk: what's top of "
            f"the list for {their_team} this quarter, and how do you handle [problem] "
            "today?\nVoicemail: \"Following up on my email about [topic] — I'll send a short"
            ' note too. Talk soon."',
            "Day 9 · late morning or early afternoon",
        ),
        (
            "email",
            14,
            "Share a short customer story with a concrete result relevant to them.",
            f"{hi}\n\nA quick story: [customer] had the same challenge as {their_team} and "
            "[achieved result] within [timeframe]. I can walk you through how in 15 "
            "minutes.\n\nWould [day] or [day] work?\n\nBest,\n[your name]",
            "Day 14 · morning",
        ),
        (
            "email",
            21,
            "Send a polite breakup email that closes the loop and leaves the door open.",
            f"{hi}\n\nI haven't heard back, so I'll assume the timing isn't right and stop "
            "following up for now. If [problem] becomes a priority for "
            f"{their_team}, just reply to this email — happy to help.\n\nAll the best,"
            "\n[your name]",
            "Day 21 · morning",
        ),
    ]
    steps = [
        PlanStep(
            step_id=i,
            action_type=action,
            description=truncate(description, DESCRIPTION_MAX),
            suggested_text=truncate(text, SUGGESTED_TEXT_MAX),
            timing=truncate(timing, TIMING_MAX),
            delay_days=delay,
        )
        for i, (action, delay, description, text, timing) in enumerate(rows, 1)
    ]
    return check_steps(steps, min_steps=MIN_STEPS)
