"""plan_repair: a model's answer becomes a runnable plan, or a clear message for the owner.

The model path through the real SDK is in test_planning.py; here the repair rules
themselves, on the shapes sloppy models actually produce.
"""

from __future__ import annotations

from typing import Any

import pytest

from activities.plan_repair import PlanGenerationError, repair_plan, truncate
from workflows.models import DESCRIPTION_MAX, TIMING_MAX


def step(i: int, delay: float, **extra: Any) -> dict[str, Any]:
    return {
        "step_id": i,
        "action_type": "email",
        "description": f"Step {i}",
        "suggested_text": f"Text {i}",
        "timing": f"Day {delay}",
        "delay_days": delay,
        **extra,
    }


def test_repair_orders_by_step_id_and_fills_gaps() -> None:
    raw = [
        step(3, 5),
        {
            "step_id": 1,
            "action_type": "LinkedIn Message",
            "description": "  Connect\n now ",
            "delay_days": None,
        },
        step(2, 2),
        {"step_id": 9, "description": "", "suggested_text": "   "},  # empty: dropped
        step(4, 9, description="", suggested_text="Call them about pricing"),
        step(5, 1.9),
        "not a step",
    ]

    plan = repair_plan(raw)

    assert [s.description for s in plan][:3] == ["Connect now", "Step 2", "Step 3"]
    assert plan[0].action_type == "linkedin_message" and plan[0].delay_days == 0
    assert [s.delay_days for s in plan] == [0, 2, 5, 9, 9]
    assert plan[3].description == "Email: Call them about pricing"
    assert plan[4].action_type == "email"


def test_repair_keeps_list_order_when_step_ids_are_unusable() -> None:
    raw = {"steps": [step(1, 0, description=f"S{i}") for i in range(6)]}
    assert [s.description for s in repair_plan(raw)] == [f"S{i}" for i in range(6)]


def test_repair_truncates_every_field_on_a_word_boundary() -> None:
    long = step(1, 0, action_type="x" * 80, description="alpha " * 100, timing="soon " * 40)
    plan = repair_plan([long, *(step(i, i) for i in range(2, 6))])
    first = plan[0]
    assert len(first.action_type) <= 32
    assert len(first.description) <= DESCRIPTION_MAX and first.description.endswith("alpha…")
    assert len(first.timing) <= TIMING_MAX and first.timing.endswith("soon…")


def test_repair_rejects_garbage_with_a_clear_message() -> None:
    with pytest.raises(PlanGenerationError, match=r"needs 5–8"):
        repair_plan([step(1, 0)])
    with pytest.raises(PlanGenerationError, match="not a readable plan"):
        repair_plan("<html>502 Bad Gateway</html>")


def test_truncate() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("the quick brown fox jumps", 12)
    assert cut == "the quick…" and len(cut) <= 12
    # No usable word boundary: hard cut.
    assert truncate("a" * 50, 10) == "a" * 9 + "…"
    # A boundary in the first half would waste too much: hard cut as well.
    assert truncate("x" * 5 + " " + "y" * 50, 20) == "xxxxx " + "y" * 13 + "…"


def test_repair_reads_other_wrappers_and_a_single_step_list() -> None:
    steps = [step(i, i) for i in range(1, 6)]
    for raw in ({"plan": steps}, {"engagement_plan": steps}, {"items": steps}, steps):
        assert [s.step_id for s in repair_plan(raw)] == [1, 2, 3, 4, 5]
    with pytest.raises(PlanGenerationError, match="did not contain a list"):
        repair_plan({"a": steps, "b": steps})
