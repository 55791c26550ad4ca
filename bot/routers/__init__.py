"""One router per feature; `all_routers` fixes the order they are tried in."""

from __future__ import annotations

from aiogram import Router

from bot.routers import add_lead, fallback, leads, plans, reminders, settings, start


def all_routers() -> list[Router]:
    # add_lead goes last: its "make a lead of this text?" catch-all must not shadow
    # commands, and commands must work in the middle of the /add dialog.
    modules = (start, settings, leads, plans, reminders, add_lead, fallback)
    return [module.make_router() for module in modules]
