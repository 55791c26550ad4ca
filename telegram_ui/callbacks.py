"""Every button's callback data: typed, short (well under Telegram's 64 bytes), never split
by hand. Prefixes and fields are a wire format: buttons already in users' chats carry them,
so none may change (tests/test_render.py pins them)."""

from enum import StrEnum
from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from storage.models import LeadStatus

# Callback data comes back from the client and can be forged: ids are bounded by their
# columns (bigint, int), so an out-of-range one fails the filter and reaches the fallback
# ("This button is no longer valid") instead of asyncpg (DataError, never answered).
LeadId = Annotated[int, Field(ge=1, le=2**63 - 1)]
SmallId = Annotated[int, Field(ge=1, le=2**31 - 1)]


# ---- sent by the worker: reminders and drafted plans ----


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


# ---- the bot's own screens ----


class LeadsPage(CallbackData, prefix="lp"):
    """A page of /leads."""

    page: int = Field(ge=0, le=1_000_000)


class LeadAct(StrEnum):
    OPEN = "o"
    PAUSE = "p"
    RESUME = "r"
    STOP = "x"
    STATUS_MENU = "s"
    REGENERATE = "g"


class LeadCallback(CallbackData, prefix="ld"):
    """A button on a lead's detail (or its line in /leads)."""

    act: LeadAct
    lead_id: LeadId


class LeadStatusCallback(CallbackData, prefix="ls"):
    """A status in the lead's 🏷 Change status menu."""

    lead_id: LeadId
    status: LeadStatus


class MakeLeadAct(StrEnum):
    YES = "y"
    NO = "n"


class MakeLeadCallback(CallbackData, prefix="ml"):
    """Answer to "Make a lead of this?"; the text itself waits in the FSM data."""

    act: MakeLeadAct
