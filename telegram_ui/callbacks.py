"""Callback data factories: typed, short (well under Telegram's 64 bytes), never split by hand."""

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class StepAct(StrEnum):
    DONE = "d"
    SNOOZE_1D = "s1"
    SNOOZE_3D = "s3"
    SKIP = "k"
    FULL_DRAFT = "f"
    STOP_PLAN = "x"


class StepCallback(CallbackData, prefix="st"):
    """A button on a reminder; plan version makes buttons of a replaced plan stale."""

    act: StepAct
    lead_id: int
    version: int
    step_id: int


class PlanAct(StrEnum):
    START = "go"
    REGENERATE = "re"
    DISCARD = "no"


class PlanCallback(CallbackData, prefix="pl"):
    """A button on a drafted plan (Start plan · Regenerate · Discard)."""

    act: PlanAct
    lead_id: int
    version: int
