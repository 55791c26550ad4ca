"""The read API: today's follow-ups, the pipeline, a lead, settings (as the user, under RLS)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from storage.models import Lead
from webapp import queries
from webapp.base import MiniAppBase
from webapp.db import as_user
from webapp.http import USER_KEY, error, lead_id

TODAY_HORIZON_DAYS = 7


class Reads(MiniAppBase):
    async def today(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        horizon = timedelta(seconds=TODAY_HORIZON_DAYS * self.settings.day_seconds)
        async with as_user(self.pool, owner) as conn:
            items = await queries.today(conn, owner, self._now(), horizon)
        return web.json_response({"now": self._now().isoformat(), "items": items})

    async def pipeline(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        async with as_user(self.pool, owner) as conn:
            leads = await queries.pipeline(conn, owner, self._now(), request.query.get("q", ""))
        return web.json_response({"now": self._now().isoformat(), "leads": leads})

    async def lead(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        async with as_user(self.pool, owner) as conn:
            view = await queries.lead(conn, owner, lead_id(request), self._now())
        if view is None:
            raise error(404, "no such lead")
        return web.json_response({"now": self._now().isoformat(), "lead": view})

    async def get_settings(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        async with as_user(self.pool, owner) as conn:
            view = await queries.settings(conn, owner)
        if view is None:
            raise error(404, "no such user")
        return web.json_response({"settings": view})

    async def owned_lead(self, request: web.Request) -> Lead:
        """The path's lead as the user's own RLS-scoped read sees it; 404 for anyone else's."""
        async with as_user(self.pool, request[USER_KEY]) as conn:
            row = await conn.fetchrow("SELECT * FROM lead_registry WHERE id = $1", lead_id(request))
        if row is None:
            raise error(404, "no such lead")
        return Lead.from_record(row)
