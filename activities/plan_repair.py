"""Turning a model's answer into steps the workflow can run, or saying why it cannot.

Models (local ones especially) answer with code fences, chatter, numbers as text, too
many steps, decreasing delays or over-long texts. Faults that are mechanical are
repaired here; what cannot become a plan raises `PlanGenerationError` with a message
meant for the owner. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from workflows.models import (
    ACTION_TYPE_MAX,
    DESCRIPTION_MAX,
    MAX_DELAY_DAYS,
    MAX_STEPS,
    MIN_STEPS,
    SUGGESTED_TEXT_MAX,
    TIMING_MAX,
    PlanStep,
    check_steps,
)

__all__ = ["PlanGenerationError", "repair_plan", "truncate"]


class PlanGenerationError(ValueError):
    """The planner's output cannot become a plan; the message is meant for the owner."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_INT = re.compile(r"-?\d+")


def truncate(text: str, limit: int) -> str:
    """Cut to `limit` characters on a word boundary, marking the cut with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = head.rstrip()
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary >= limit // 2:
        cut = cut[:boundary]
    return cut.rstrip(" \n\t,;:-–—") + "…"


def _load_json(text: str) -> Any:
    """The first JSON value in a model answer, tolerating code fences and chatter."""
    text = text.strip()
    candidates = [text, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    raise PlanGenerationError(
        "The AI planner's answer was not a readable plan. Try Regenerate, or add the steps "
        "yourself."
    )


def _step_list(raw: object) -> list[object]:
    if isinstance(raw, str | bytes | bytearray):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        raw = _load_json(text)
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    if isinstance(raw, Mapping):
        for key in ("steps", "plan", "engagement_plan"):
            if isinstance(raw.get(key), list):
                return list(raw[key])
        lists = [v for v in raw.values() if isinstance(v, list)]
        if len(lists) == 1:
            return list(lists[0])
        if "description" in raw or "suggested_text" in raw:
            return [raw]
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        return list(raw)
    raise PlanGenerationError(
        "The AI planner's answer did not contain a list of steps. Try Regenerate, or add the "
        "steps yourself."
    )


def _text(value: object) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str | int | float):
        return str(value).strip()
    return ""


def _one_line(value: object) -> str:
    return " ".join(_text(value).split())


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e9 else None
    if isinstance(value, str):
        match = _INT.search(value)
        return int(match.group()) if match else None
    return None


def _action_type(value: object) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", _one_line(value).lower()).strip("_")
    return slug[:ACTION_TYPE_MAX].rstrip("_") or "task"


def _clean_step(raw: object) -> dict[str, Any] | None:
    """One step with sane types and lengths, or None when there is nothing to do."""
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    if not isinstance(raw, Mapping):
        return None
    description = _one_line(raw.get("description"))
    suggested = _text(raw.get("suggested_text"))
    if not description and not suggested:
        return None
    action = _action_type(raw.get("action_type"))
    if not description:
        description = f"{action.replace('_', ' ').capitalize()}: {_one_line(suggested)}"
    delay = _int(raw.get("delay_days"))
    return {
        "order": _int(raw.get("step_id")),
        "action_type": action,
        "description": truncate(description, DESCRIPTION_MAX),
        "suggested_text": truncate(suggested, SUGGESTED_TEXT_MAX),
        "timing": truncate(_one_line(raw.get("timing")), TIMING_MAX),
        "delay_days": None if delay is None else min(max(delay, 0), MAX_DELAY_DAYS),
    }


def repair_plan(raw_steps: object) -> list[PlanStep]:
    """Turn a model's steps into a runnable plan, or say clearly why that is impossible.

    Accepts the raw JSON text, a `{"steps": [...]}` mapping or a list of step mappings.
    Repairs: steps ordered by the model's step_id when those are unique, ids renumbered
    1..n, delays clamped to 0–90 and made non-decreasing in that order (a missing delay
    repeats the previous one), texts cut on a word boundary, empty steps dropped, and
    more than 8 steps cut to the first 7 plus the last (the breakup message).
    """
    steps = [s for s in map(_clean_step, _step_list(raw_steps)) if s is not None]
    orders = [s["order"] for s in steps]
    if None not in orders and len(set(orders)) == len(orders):
        steps.sort(key=lambda s: s["order"])
    if len(steps) < MIN_STEPS:
        raise PlanGenerationError(
            f"The AI planner returned only {len(steps)} usable step(s); a plan needs "
            f"{MIN_STEPS}–{MAX_STEPS}. Try Regenerate, or add the steps yourself."
        )
    if len(steps) > MAX_STEPS:
        steps = [*steps[: MAX_STEPS - 1], steps[-1]]
    previous = 0
    plan: list[PlanStep] = []
    for number, step in enumerate(steps, 1):
        delay = previous if step["delay_days"] is None else max(step["delay_days"], previous)
        previous = delay
        fields = {k: v for k, v in step.items() if k != "order"}
        plan.append(PlanStep(**{**fields, "step_id": number, "delay_days": delay}))
    return check_steps(plan, min_steps=MIN_STEPS)
