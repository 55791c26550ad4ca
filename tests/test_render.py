"""What the owner sees on a reminder, built without Telegram."""

from __future__ import annotations

from storage.models import LeadStatus
from telegram_ui import callbacks as cb
from telegram_ui import keyboards
from workflows.models import StepState


def step(draft: str) -> StepState:
    return StepState(
        step_id=1, action_type="email", description="Intro", delay_days=0, suggested_text=draft
    )


def test_full_draft_is_offered_whenever_there_is_a_draft() -> None:
    """Even a short draft: "Full draft" sends it as its own message, easy to copy."""
    texts = [
        b.text
        for row in keyboards.reminder_keyboard(1, 1, step("Hi!")).inline_keyboard
        for b in row
    ]
    assert "📄 Full draft" in texts
    texts = [
        b.text for row in keyboards.reminder_keyboard(1, 1, step("")).inline_keyboard for b in row
    ]
    assert "📄 Full draft" not in texts and "✅ Done" in texts


def test_a_failed_draft_offers_regenerate_and_discards_only_without_a_running_plan() -> None:
    fresh = [
        b.text for row in keyboards.plan_failed_keyboard(1, 1, False).inline_keyboard for b in row
    ]
    running = [
        b.text for row in keyboards.plan_failed_keyboard(1, 2, True).inline_keyboard for b in row
    ]
    assert fresh == ["🔄 Regenerate", "🗑 Discard"]
    assert running == ["🔄 Regenerate"]  # Discard would stop the plan that keeps running


def test_callback_data_keeps_its_wire_format() -> None:
    """Buttons already in users' chats carry these strings: prefixes, field order and
    values must never change, and each still unpacks to the same callback."""
    wire = {
        "st:s3:12:3:4": cb.StepCallback(act=cb.StepAct.SNOOZE_3D, lead_id=12, version=3, step_id=4),
        "pl:re:12:3": cb.PlanCallback(act=cb.PlanAct.REGENERATE, lead_id=12, version=3),
        "lp:2": cb.LeadsPage(page=2),
        "ld:s:12": cb.LeadCallback(act=cb.LeadAct.STATUS_MENU, lead_id=12),
        "ls:12:closed_won": cb.LeadStatusCallback(lead_id=12, status=LeadStatus.CLOSED_WON),
        "ml:y": cb.MakeLeadCallback(act=cb.MakeLeadAct.YES),
    }
    for packed, data in wire.items():
        assert data.pack() == packed
        assert type(data).unpack(packed) == data
    acts = {
        cb.StepAct: {"d", "s1", "s3", "k", "f", "x"},
        cb.PlanAct: {"go", "re", "no"},
        cb.LeadAct: {"o", "p", "r", "x", "s", "g"},
        cb.MakeLeadAct: {"y", "n"},
    }
    for act, values in acts.items():
        assert set(act) == values, act
