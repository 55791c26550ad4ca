"""Callback data factories: typed, short (well under Telegram's 64 bytes), never split by hand."""

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

# Callback data comes back from the client and can be forged: ids are bounded by their
# columns (bigint, int), so an out-of-range one fails the filter and reaches the fallback
# ("This button is no longer valid") instead of asyncpg (DataError, never answered).
LeadId = Annotated[int, Field(ge=1, le=2**63 - 1)]
SmallId = Annotated[int, Field(ge=1, le=2**31 - 1)]


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
    lead_id: LeadId
    version: SmallId
    step_id: SmallId


class PlanAct(StrEnum):
    START = "go"
    REGENERATE = "re"
    DISCARD = "no"


class PlanCallback(CallbackData, prefix="pl"):
    """A button on a drafted plan (Start plan · Regenerate · Discard)."""

    act: PlanAct
    lead_id: LeadId
    version: SmallId
