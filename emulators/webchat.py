"""A local web chat page for the Telegram emulator: talk to the bot as a Telegram user.

Why: the one-command dev stack (SPEC §7) runs without a Telegram account, so a newcomer
needs a browser page that plays the user's side — type messages and commands, see the
bot's formatted messages, tap inline buttons, see edits and callback toasts live.

The page (``GET /chat``: chat.html with its chat.js and chat.css, no CDN) talks to small JSON
endpoints that wrap the emulator's user-side API:

* ``GET  /chat/api/history`` → ``{seq, user, bot, commands, messages}``
* ``POST /chat/api/send  {text}`` → the user types ``text`` (commands too)
* ``POST /chat/api/press {message_id, callback_data}`` → the user taps an inline button
* ``GET  /chat/api/events?since=N[&timeout=S]`` → long-poll (≤ 25 s) of the emulator's
  append-only change log, each event carrying the message's current state
* ``POST /chat/api/webapp {url}`` → ``{init_data}``: Mini App launch data for the chatting
  user, signed with the bot token exactly as Telegram signs it; the page opens the app
  (a ``web_app`` button or the menu button set by ``setChatMenuButton``) in a side panel
  and plays Telegram's side of it (back button, main button, popups, theme) over
  ``postMessage``, with a stand-in for ``telegram-web-app.js`` at
  ``GET /chat/telegram-web-app.js``.

Messages are sent as plain text plus Telegram entities (UTF-16 offsets, which are what
JavaScript string indices are), and the page builds DOM nodes from them with
``textContent``: no HTML from the bot or the user is ever parsed by the browser.

Mount it on the emulator's own port (before ``start()``)::

    emu = TelegramEmulator(...)
    mount_webchat(emu)            # or emu.add_app_hook(lambda app: add_webchat_routes(...))
    await emu.start(port=8081)    # page at emu.base_url + "/chat"

Standalone for manual checks: ``python -m emulators.webchat --port 8081``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from emulators.telegram import (
    TEXT_LIMIT,
    ChatEvent,
    Message,
    TelegramEmulator,
    utf16_len,
)

__all__ = [
    "CHAT_PATH",
    "DEFAULT_USER_ID",
    "MAX_POLL_TIMEOUT",
    "add_webchat_routes",
    "message_view",
    "mount_webchat",
]

CHAT_PATH = "/chat"
DEFAULT_USER_ID = 1001
MAX_POLL_TIMEOUT = 25.0
STATIC_DIR = Path(__file__).with_name("webchat_static")
PAGE_FILE = STATIC_DIR / "chat.html"
WEB_APP_JS = STATIC_DIR / "telegram-web-app.js"  # also served by benchmarks/miniapp.py
# The page's own script and styles, and the stand-in for Telegram's telegram-web-app.js.
ASSETS = {
    "chat.js": "application/javascript",
    "chat.css": "text/css",
    "telegram-web-app.js": "application/javascript",
}
_SAFE_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")


def message_view(message: Message) -> dict[str, Any]:
    """What the page needs to draw one message: plain text, entities and the keyboard."""
    keyboard: list[list[dict[str, Any]]] = []
    for row in (message.reply_markup or {}).get("inline_keyboard") or []:
        buttons: list[dict[str, Any]] = []
        for button in row:
            url = button.get("url")
            safe_url = isinstance(url, str) and url.startswith(_SAFE_LINK_SCHEMES)
            view = {
                "text": str(button.get("text", "")),
                "callback_data": button.get("callback_data"),
                "url": url if safe_url else None,
            }
            web_app = _web_app_url(button.get("web_app"))
            if web_app is not None:  # a Mini App button: the page opens it in its side panel
                view["web_app"] = web_app
            buttons.append(view)
        keyboard.append(buttons)
    reply_to = None
    if message.reply_to_message_id is not None:
        replied = message.chat.messages.get(message.reply_to_message_id)
        if replied is not None and not replied.deleted:
            reply_to = {"message_id": replied.message_id, "text": (replied.text or "")[:120]}
    return {
        "message_id": message.message_id,
        "from_bot": message.from_bot,
        "sender": message.sender.first_name,
        "date": message.date,
        "edit_date": message.edit_date,
        "text": message.text or "",
        "entities": list(message.entities),
        "keyboard": keyboard,
        "reply_to": reply_to,
        "forwarded_from": _origin_name(message.forward_origin),
    }


def _web_app_url(web_app: Any) -> str | None:
    url = web_app.get("url") if isinstance(web_app, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def sign_web_app_data(bot_token: str, user: dict[str, Any], auth_date: int | None = None) -> str:
    """Mini App initData as Telegram builds it: fields plus the HMAC-SHA256 `hash` keyed by
    HMAC_SHA256("WebAppData", bot_token) (core.telegram.org/bots/webapps)."""
    fields = {
        "query_id": "AA" + secrets.token_urlsafe(12),
        "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
    }
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    key = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(key, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def _origin_name(origin: dict[str, Any] | None) -> str | None:
    if not origin:
        return None
    if origin.get("type") == "user":
        sender = origin.get("sender_user") or {}
        return " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")]))
    if origin.get("type") == "channel":
        return str((origin.get("chat") or {}).get("title") or "a channel")
    return str(origin.get("sender_user_name") or "someone")


class _WebChat:
    """Request handlers bound to one emulator and the one user the page plays."""

    def __init__(self, emulator: TelegramEmulator, user_id: int, first_name: str) -> None:
        self.emulator = emulator
        self.user_id = user_id
        self.first_name = first_name

    def _latest_seq(self) -> int:
        events = self.emulator.events()
        return events[-1].seq if events else 0

    def _event_view(self, event: ChatEvent) -> dict[str, Any]:
        message = None
        if event.kind in ("message", "edit") and event.message_id is not None:
            with contextlib.suppress(LookupError):
                message = message_view(self.emulator.message(event.chat_id, event.message_id))
        return {
            "seq": event.seq,
            "kind": event.kind,
            "message_id": event.message_id,
            "detail": event.detail,
            "message": message,
        }

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE_FILE, headers={"Cache-Control": "no-store"})

    async def history(self, request: web.Request) -> web.Response:
        emu = self.emulator
        emu.add_user(self.user_id, self.first_name)  # again: reset() forgets users
        return web.json_response(
            {
                "seq": self._latest_seq(),
                "user": {"id": self.user_id, "first_name": self.first_name},
                "bot": {"first_name": emu.bot.first_name, "username": emu.bot.username},
                "commands": emu.commands(),
                "menu_app": self._menu_app(),
                "messages": [message_view(m) for m in emu.history(self.user_id)],
            }
        )

    def _menu_app(self) -> dict[str, str] | None:
        """The chat's menu button, if the bot set a web_app one (the latest call wins)."""
        for call in reversed(self.emulator.calls("setChatMenuButton", ok=True)):
            chat = call.params.get("chat_id")
            if chat is not None and chat != self.user_id:
                continue
            button = call.params.get("menu_button") or {}
            url = _web_app_url(button.get("web_app")) if isinstance(button, dict) else None
            if url is None:
                return None
            return {"text": str(button.get("text") or "App"), "url": url}
        return None

    async def web_app(self, request: web.Request) -> web.Response:
        """Launch data for a Mini App the bot offered, signed for the chatting user."""
        body = await _json_body(request)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _client_error("url must be an http(s) URL")
        user = {
            "id": self.user_id,
            "first_name": self.first_name,
            "language_code": "en",
            "allows_write_to_pm": True,
        }
        return web.json_response({"init_data": sign_web_app_data(self.emulator.token, user)})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]  # one of ASSETS: only those are routed
        return web.FileResponse(
            STATIC_DIR / name,
            headers={"Cache-Control": "no-store", "Content-Type": ASSETS[name]},
        )

    async def send(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _client_error("text must be a non-empty string")
        if utf16_len(text) > TEXT_LIMIT:
            raise _client_error(f"text is longer than {TEXT_LIMIT} characters")
        message = self.emulator.user_says(self.user_id, text, first_name=self.first_name)
        return web.json_response({"message": message_view(message)})

    async def press(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        message_id, data = body.get("message_id"), body.get("callback_data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            raise _client_error("message_id (int) and callback_data (str) are required")
        try:
            message = self.emulator.message(self.user_id, message_id)
        except LookupError:
            raise _client_error("no such message", status=404) from None
        # Only buttons the user can actually see: the emulator itself lets tests forge presses.
        if message.deleted or all(b.callback_data != data for b in message.buttons):
            raise _client_error("that message has no such button", status=409)
        query_id = self.emulator.press(self.user_id, message_id, data, first_name=self.first_name)
        return web.json_response({"callback_query_id": query_id})

    async def events(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
            timeout = float(request.query.get("timeout", MAX_POLL_TIMEOUT))
        except ValueError:
            raise _client_error("since and timeout must be numbers") from None
        timeout = min(max(timeout, 0.0), MAX_POLL_TIMEOUT)
        if since > self._latest_seq():
            # The emulator restarted or was reset under the page: its view is stale.
            return web.json_response({"reset": True, "seq": 0, "events": []})
        found = await self.emulator.wait_events(since, timeout, chat_id=self.user_id)
        return web.json_response(
            {
                "reset": False,
                "seq": found[-1].seq if found else since,
                "events": [self._event_view(e) for e in found],
            }
        )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _client_error("body must be JSON") from None
    if not isinstance(body, dict):
        raise _client_error("body must be a JSON object")
    return body


def _client_error(description: str, status: int = 400) -> web.HTTPException:
    """An aiohttp error whose JSON body the page can show as a toast."""
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    body = json.dumps({"error": description})
    return classes[status](text=body, content_type="application/json")


def add_webchat_routes(
    app: web.Application,
    emulator: TelegramEmulator,
    *,
    user_id: int = DEFAULT_USER_ID,
    first_name: str = "You",
) -> None:
    """Mount the chat page and its API on ``app``; the page plays Telegram user ``user_id``.

    The user is registered right away so the bot can message them (e.g. reminders) before
    they say anything.
    """
    emulator.add_user(user_id, first_name)
    chat = _WebChat(emulator, user_id, first_name)
    app.router.add_get(CHAT_PATH, chat.page)
    app.router.add_get(f"{CHAT_PATH}/", chat.page)
    app.router.add_get(f"{CHAT_PATH}/api/history", chat.history)
    app.router.add_post(f"{CHAT_PATH}/api/send", chat.send)
    app.router.add_post(f"{CHAT_PATH}/api/press", chat.press)
    app.router.add_get(f"{CHAT_PATH}/api/events", chat.events)
    app.router.add_post(f"{CHAT_PATH}/api/webapp", chat.web_app)
    for name in ASSETS:
        app.router.add_get(f"{CHAT_PATH}/{name}", chat.asset)


def mount_webchat(
    emulator: TelegramEmulator,
    *,
    user_id: int = DEFAULT_USER_ID,
    first_name: str = "You",
) -> None:
    """Serve the page on the emulator's own port from its next ``start()`` on."""
    emulator.add_app_hook(
        lambda app: add_webchat_routes(app, emulator, user_id=user_id, first_name=first_name)
    )


async def _serve(host: str, port: int, user_id: int, first_name: str) -> None:
    emulator = TelegramEmulator(auto_create_chats=True)
    mount_webchat(emulator, user_id=user_id, first_name=first_name)
    try:
        await emulator.start(host, port)
    except OSError as error:
        raise SystemExit(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    print(f"Telegram emulator: {emulator.base_url}  (bot token {emulator.token})")
    print(f"Web chat:          {emulator.base_url}{CHAT_PATH}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run an emulator with the chat page; point a bot at the printed URL and token."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--user-id", type=int, default=DEFAULT_USER_ID)
    parser.add_argument("--first-name", default="You")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.user_id, args.first_name))


if __name__ == "__main__":
    main()
