"""plan_notes: the owner's notes about a lead, read into facts a message can say."""

from __future__ import annotations

import pytest

from activities.plan_brief import LeadBrief
from activities.plan_notes import LeadFacts, read_lead


def facts(notes: str, **fields: str) -> LeadFacts:
    return read_lead(LeadBrief(original_context=notes, **fields))


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        (
            "Met at SaaStr; evaluating outbound tooling for Q3.",
            {"place": "at SaaStr", "need": "you're evaluating outbound tooling for Q3"},
        ),
        (
            "I met her at the Berlin meetup and she wants to grow their SDR team",
            {"place": "at the Berlin meetup", "need": "you'd like to grow your SDR team"},
        ),
        ("Talked on the phone", {"place": "on the phone", "met_in_person": False}),
        (
            "referred by our CEO, hiring 5 SDRs",
            {"referrer": "Our CEO", "need": "you're hiring 5 SDRs"},
        ),
        (
            "Intro from Maria Lopez. Asked for a proposal",
            {"referrer": "Maria Lopez", "need": "you asked for a proposal"},
        ),
        ("Can you send me pricing?", {"question": "Can you send me pricing?"}),
        ("Promised to send them the case study", {"promise": "the case study"}),
        ("Needs a CRM but budget is tight", {"need": "you need a CRM"}),
        ("Not interested in ads", {"note": "Not interested in ads"}),
        ("Budget approved for Q3. Call after the 15th", {"note": "Budget approved for Q3"}),
        ("Decision maker? Budget unknown", {"note": "Budget unknown"}),
        ("Is she the decision maker?", {}),
        ("", {}),
    ],
)
def test_notes_are_read_into_facts(notes: str, expected: dict[str, object]) -> None:
    got = facts(notes)
    for field in ("place", "referrer", "need", "question", "promise", "note"):
        assert getattr(got, field) == expected.get(field, ""), field
    assert got.met_in_person == expected.get("met_in_person", True)


def test_company_named_in_passing_fills_a_missing_company() -> None:
    assert facts("Bob from Acme Corp wants a demo").company == "Acme Corp"
    assert facts("Bob from Acme wants a demo", prospect_company="Initech").company == "Initech"
    assert facts("Referred by Maria from Stripe").company == ""  # Maria's company, not Bob's


def test_names_keep_their_dots_and_lose_extra_space() -> None:
    got = read_lead(LeadBrief(prospect_name="  José   Ángel ", prospect_company="Acme Inc."))
    assert (got.full_name, got.first_name, got.company) == ("José Ángel", "José", "Acme Inc.")
    assert read_lead(LeadBrief(prospect_name="李雷")).first_name == "李雷"


def test_very_long_notes_stay_short_in_messages() -> None:
    got = facts("Evaluating " + "very " * 200 + "big tools")
    assert got.need.startswith("you're evaluating very") and len(got.need) <= 160
    assert got.notes.startswith("Evaluating very")
