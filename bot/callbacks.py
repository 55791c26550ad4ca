"""Callback data of bot-only buttons (reminder and plan buttons live in telegram_ui)."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from storage.models import LeadStatus


class LeadsPage(CallbackData, prefix="lp"):
    page: int


class LeadAct(StrEnum):
    OPEN = "o"
    PAUSE = "p"
    RESUME = "r"
    STOP = "x"
    STATUS_MENU = "s"
    REGENERATE = "g"


class LeadCallback(CallbackData, prefix="ld"):
    act: LeadAct
    lead_id: int


class LeadStatusCallback(CallbackData, prefix="ls"):
    lead_id: int
    status: LeadStatus


class MakeLeadAct(StrEnum):
    YES = "y"
    NO = "n"


class MakeLeadCallback(CallbackData, prefix="ml"):
    """Answer to "Make a lead of this?"; the text itself waits in the FSM data."""

    act: MakeLeadAct
