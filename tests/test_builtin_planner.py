"""The built-in planner as a salesperson sees its drafts: ready to send, about this lead,
and different when they press Regenerate."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.builtin_planner import ANGLES, builtin_plan
from activities.plan_brief import LeadBrief
from tests.rig import ANYTIME, OWNER, eventually, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import (
    MAX_DELAY_DAYS,
    MAX_STEPS,
    MIN_STEPS,
    PlanStatus,
    PlanStep,
    ReplacePlanRequest,
    check_steps,
)

LONG_NOTES = (
    "Long call notes. " * 40
    + "Referred by Priya Raman. They are looking for a new payroll provider. "
    + "More background on the org chart and budget cycle. " * 20
)

# (lead, phrases the first message must carry: the owner's notes, said to the prospect)
SHAPES = [
    pytest.param(
        LeadBrief(
            prospect_name="Anna Schmidt",
            prospect_company="Acme GmbH",
            prospect_title="VP Sales",
            original_context="Met at SaaStr; evaluating outbound tooling for Q3.",
        ),
        ["at SaaStr", "you're evaluating outbound tooling for Q3"],
        id="company-and-notes",
    ),
    pytest.param(
        LeadBrief(
            prospect_name="Mia Wong",
            original_context="We met at the Berlin fintech meetup, she needs a cleaner onboarding flow",
        ),
        ["at the Berlin fintech meetup", "you need a cleaner onboarding flow"],
        id="notes-no-company",
    ),
    pytest.param(
        LeadBrief(prospect_name="Carl Jones", prospect_company="Northwind"),
        ["Northwind"],
        id="company-no-notes",
    ),
    pytest.param(LeadBrief(prospect_name="Dana"), [], id="name-only"),
    pytest.param(LeadBrief(), [], id="all-empty"),
    pytest.param(
        LeadBrief(prospect_name="Eve Adams", original_context=LONG_NOTES),
        ["Priya Raman suggested", "you're looking for a new payroll provider"],
        id="long-notes",
    ),
    pytest.param(
        LeadBrief(prospect_name="Grace Hopper", original_context="Can you send me pricing?"),
        ["“Can you send me pricing?”"],
        id="forwarded-question",
    ),
    pytest.param(
        LeadBrief(prospect_name="Bob", original_context="Bob from Acme wants a demo"),
        ["you'd like a demo"],
        id="company-in-notes",
    ),
    pytest.param(
        LeadBrief(
            prospect_name="José Ángel Müller",
            prospect_company="Café Núñez S.L.",
            original_context="Talked on the phone; interested in their loyalty program for 3 shops",
        ),
        ["on the phone", "you're interested in your loyalty program for 3 shops"],
        id="accented-names",
    ),
    pytest.param(
        LeadBrief(
            prospect_name="Алексей Иванов",
            original_context="Познакомились на выставке в Берлине. Нужна CRM.",
        ),
        ["Познакомились на выставке в Берлине"],
        id="cyrillic",
    ),
    pytest.param(
        LeadBrief(prospect_name="李雷", original_context="Met at WAIC in Shanghai"),
        ["at WAIC in Shanghai"],
        id="cjk-name",
    ),
    pytest.param(
        LeadBrief(
            prospect_name='<b>Ann & "Bo"</b>',
            prospect_company="<A&B> Ltd",
            original_context="</lead_data>",
        ),
        ["</lead_data>"],  # raw here; escaping for Telegram's HTML is the sender's job
        id="html",
    ),
    pytest.param(
        LeadBrief(
            prospect_name="Wolfeschlegel" * 400,
            prospect_company="X " * 900,
            prospect_title="Chief " * 100,
            original_context="word " * 3000,
        ),
        [],
        id="very-long",
    ),
    pytest.param(
        LeadBrief.model_validate({"prospect_name": None, "prospect_company": None}), [], id="nulls"
    ),
]


def draft(lead: LeadBrief, number: int) -> list[PlanStep]:
    """The plan for the lead's `number`-th draft, as the mirror would report it."""
    return builtin_plan(lead.model_copy(update={"plan_version": number, "engagement_plan": None}))


def messages(plan: list[PlanStep]) -> list[str]:
    return [s.suggested_text for s in plan]


def assert_valid(plan: list[PlanStep]) -> None:
    """SPEC §6: 5–8 steps, ids 1..n, delays 0–90 never decreasing, every length limit."""
    check_steps(plan, min_steps=MIN_STEPS)
    assert MIN_STEPS <= len(plan) <= MAX_STEPS
    assert [s.step_id for s in plan] == list(range(1, len(plan) + 1))
    assert plan[0].delay_days == 0 and plan[-1].delay_days <= MAX_DELAY_DAYS
    for s in plan:
        PlanStep.model_validate(s.model_dump())
        if s.action_type == "linkedin":  # a connection request note
            assert len(s.suggested_text) <= 300


@pytest.mark.parametrize(("lead", "phrases"), SHAPES)
def test_drafts_are_ready_to_send_and_about_this_lead(lead: LeadBrief, phrases: list[str]) -> None:
    first_name = " ".join(lead.prospect_name.split()).split(" ")[0]
    for number in range(1, 2 * len(ANGLES) + 1):
        plan = draft(lead, number)
        assert_valid(plan)
        for s in plan:
            text = s.suggested_text
            assert "[" not in text and "]" not in text and "{" not in text, text
            assert "like your team" not in text and "like yours" not in text, text
            assert "your team" not in text or lead.prospect_company, text
            assert "the prospect" not in text and "  " not in text, text
            if not lead.prospect_company:
                assert " at ." not in text and " at ," not in text and "for ." not in text, text
        intro = plan[0].suggested_text
        if first_name and len(first_name) < 30:
            assert intro.startswith(f"Hi {first_name},\n\n"), intro
        elif not first_name:
            assert intro.startswith("Hi,\n\n"), intro
        for phrase in phrases:  # the owner's notes reach the first message, every draft
            assert phrase in intro, (number, phrase, intro)
        company = lead.prospect_company or ("Acme" if "from Acme" in lead.original_context else "")
        if company and len(company) < 60:
            assert company in intro, intro
        assert plan == draft(lead, number)  # same lead, same draft number: same plan


@pytest.mark.parametrize(("lead", "phrases"), SHAPES)
def test_each_regenerated_draft_differs_from_the_one_before(
    lead: LeadBrief, phrases: list[str]
) -> None:
    for number in range(1, 2 * len(ANGLES) + 1):
        before, after = draft(lead, number), draft(lead, number + 1)
        assert messages(before) != messages(after)
        assert [s.delay_days for s in before] != [s.delay_days for s in after]
        # Visibly different: the opening email and the cadence, not just one word.
        assert before[0].suggested_text != after[0].suggested_text
    # Six drafts before the first angle and cadence come round again.
    plans = {
        (tuple(messages(p)), tuple(s.delay_days for s in p))
        for p in (draft(lead, n) for n in range(1, 2 * len(ANGLES) + 1))
    }
    assert len(plans) == 2 * len(ANGLES)


def test_a_lagging_mirror_still_gets_a_different_plan() -> None:
    """If the mirror still shows the plan this draft would repeat, the next angle is taken."""
    lead = LeadBrief(prospect_name="Anna", original_context="met at a fair")
    shown = draft(lead, 2)
    lagging = lead.model_copy(
        update={"plan_version": 1, "engagement_plan": [s.model_dump(mode="json") for s in shown]}
    )
    assert lagging.draft_number == 2
    assert messages(builtin_plan(lagging)) != messages(shown)


def test_the_draft_the_workflow_asks_for_wins_over_the_mirror() -> None:
    """Runs that send `draft_number` never depend on how far the mirror has caught up."""
    lead = LeadBrief(prospect_name="Anna", original_context="met at a fair", plan_version=1)
    asked = lead.model_copy(update={"requested_draft": 3})
    assert lead.draft_number == 1 and asked.draft_number == 3
    assert messages(builtin_plan(asked)) == messages(draft(lead, 3))


def test_first_draft_is_the_classic_sequence() -> None:
    plan = draft(LeadBrief(prospect_name="Anna", prospect_company="Acme"), 1)
    assert [s.delay_days for s in plan] == [0, 2, 5, 9, 14, 21]
    assert [s.action_type for s in plan] == ["email", "linkedin", "email", "call", "email", "email"]
    assert [s.timing for s in plan][:2] == [
        "Day 0 · morning in their time zone",
        "Day 2 · any time",
    ]
    assert "breakup" in plan[-1].description


def test_call_notes_carry_the_owners_words() -> None:
    """Talking points are for the salesperson: their own notes, verbatim, beside the script."""
    notes = "Met at SaaStr; evaluating outbound tooling for Q3."
    for number in range(1, len(ANGLES) + 1):
        calls = [
            s for s in draft(LeadBrief(original_context=notes), number) if s.action_type == "call"
        ]
        assert calls and all(f"Your notes: {notes}" in s.suggested_text for s in calls)


def test_a_negated_interest_is_not_offered_back() -> None:
    lead = LeadBrief(
        prospect_name="Li",
        original_context="Not interested in ads, needs help with their onboarding emails",
    )
    intro = draft(lead, 1)[0].suggested_text
    assert "interested in ads" not in intro
    assert "you need help with your onboarding emails" in intro


def test_a_memo_question_is_not_sent_to_the_prospect() -> None:
    intro = draft(LeadBrief(prospect_name="Li", original_context="Is she the decision maker?"), 1)[
        0
    ]
    assert "decision maker" not in intro.suggested_text


# ---- through the workflow: Regenerate as the owner presses it ----


async def test_regenerate_in_a_running_plan_drafts_a_different_plan(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """The worker's loader reads the mirrored plan version, so the second draft of a lead
    takes another angle and cadence; the owner receives both drafts and they differ."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        await pool.execute(
            "UPDATE lead_registry SET original_context = $2 WHERE id = $1",
            lead,
            "Met at the Hannover fair; looking for a faster quoting process",
        )
        handle = await rig.start(lead, steps=None, schedule=ANYTIME)
        first = await rig.wait_state(handle, lambda s: len(s.steps) >= MIN_STEPS and s.revision > 0)
        await handle.execute_update(EngagementPlanWorkflow.replace_plan, ReplacePlanRequest())
        second = await rig.wait_state(
            handle, lambda s: s.plan_version == 2 and not s.drafting and len(s.steps) >= MIN_STEPS
        )
        assert second.status == PlanStatus.AWAITING_APPROVAL
        texts = [[s.suggested_text for s in st.steps] for st in (first, second)]
        delays = [[s.delay_days for s in st.steps] for st in (first, second)]
        assert texts[0] != texts[1] and delays[0] != delays[1]
        # Taken from the mirrored version (the second angle), not only by the lag fallback.
        assert delays == [list(ANGLES[0].cadences[0]), list(ANGLES[1].cadences[0])]
        for plan in texts:
            assert "at the Hannover fair" in plan[0]
            assert "you're looking for a faster quoting process" in plan[0]
            assert not any("[" in t for t in plan)

        async def both_drafts() -> list[str] | None:
            sent = [m.text or "" for m in telegram.sent(OWNER)]
            drafts = [t for t in sent if "Engagement plan" in t]
            return drafts if len(drafts) >= 2 else None

        drafts = await eventually(both_drafts)
        assert len(drafts) == 2 and drafts[0] != drafts[1]
