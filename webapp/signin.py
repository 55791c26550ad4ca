"""Sign-in: the page, Telegram initData traded for a session token, the token check."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from storage.users import UserRepository
from webapp.auth import AuthError, issue_token, validate_init_data, verify_token
from webapp.base import MiniAppBase
from webapp.http import USER_KEY, error, json_body

APP_PATH = "/app"
STATIC_DIR = Path(__file__).with_name("static")


class SignIn(MiniAppBase):
    async def page(self, request: web.Request) -> web.Response:
        text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        script = html.escape(self.settings.miniapp_telegram_js, quote=True)
        return web.Response(
            text=text.replace("{{TELEGRAM_JS}}", script),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def session(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        init_data = body.get("init_data")
        if not isinstance(init_data, str):
            raise error(401, "init_data is required")
        try:
            user = validate_init_data(
                init_data,
                self.settings.telegram_bot_token.get_secret_value(),
                self.settings.miniapp_auth_max_age_seconds,
            )
        except AuthError as err:
            raise error(401, str(err)) from None
        # Same registration as the bot's middleware: a user who opens the app first exists.
        registered = await UserRepository(self.pool).upsert(
            user.id, user.first_name, user.last_name, user.username
        )
        ttl = self.settings.miniapp_session_ttl_seconds
        return web.json_response(
            {
                "token": issue_token(user.id, self.secret, ttl),
                "expires_in": ttl,
                "user": {
                    "id": user.id,
                    "first_name": user.first_name,
                    "timezone": registered.timezone,
                },
            }
        )

    @web.middleware
    async def authenticate(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(f"{APP_PATH}/api/") and path != f"{APP_PATH}/api/session":
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                raise error(401, "sign in first")
            try:
                request[USER_KEY] = verify_token(
                    header.removeprefix("Bearer ").strip(), self.secret
                )
            except AuthError as err:
                raise error(401, str(err)) from None
        return await handler(request)
