"""Callback data of bot-only buttons (reminder and plan buttons live in telegram_ui)."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from storage.models import LeadStatus
from telegram_ui.callbacks import LeadId


class LeadsPage(CallbackData, prefix="lp"):
    page: int = Field(ge=0, le=1_000_000)


class LeadAct(StrEnum):
    OPEN = "o"
    PAUSE = "p"
    RESUME = "r"
    STOP = "x"
    STATUS_MENU = "s"
    REGENERATE = "g"


class LeadCallback(CallbackData, prefix="ld"):
    act: LeadAct
    lead_id: LeadId


class LeadStatusCallback(CallbackData, prefix="ls"):
    lead_id: LeadId
    status: LeadStatus


class MakeLeadAct(StrEnum):
    YES = "y"
    NO = "n"


class MakeLeadCallback(CallbackData, prefix="ml"):
    """Answer to "Make a lead of this?"; the text itself waits in the FSM data."""

    act: MakeLeadAct
