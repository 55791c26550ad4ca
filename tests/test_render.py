"""What the owner sees on a reminder, built without Telegram."""

from __future__ import annotations

from telegram_ui import keyboards
from workflows.models import StepState


def step(draft: str) -> StepState:
    return StepState(
        step_id=1, action_type="email", description="Intro", delay_days=0, suggested_text=draft
    )


def test_full_draft_is_offered_whenever_there_is_a_draft() -> None:
    """Even a short draft: "Full draft" sends it as its own message, easy to copy."""
    texts = [
        b.text for row in keyboards.reminder_keyboard(1, 1, step("Hi!")).inline_keyboard for b in row
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
