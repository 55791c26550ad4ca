"""Telegram Bot API emulator: a local aiohttp server speaking the real Bot API wire format.

Why: Telegram is unreachable from tests and the local demo, yet we want the real aiogram
client (HTTP session, serialisation, error mapping, polling loop, webhook handler) to be
exercised end to end. Point aiogram at it with::

    session = AiohttpSession(api=TelegramAPIServer.from_base(emu.base_url))
    bot = Bot(emu.token, session=session)

The state model (users, chats, messages with per-chat ids, inline keyboards, edit history,
an append-only event log) is meant to back a web chat page as well as test assertions.
Everything runs on one asyncio loop; the emulator is not thread-safe.

Deliberate differences from Telegram (all aimed at catching bugs, not hiding them):

* ``strict_html`` (default on) rejects a bare ``&`` that is not an HTML entity; Telegram
  would show it literally, but in our bot it always means a string was not escaped.
* Text length is counted in UTF-16 code units, the stricter of the plausible readings of
  Telegram's 4096-character limit.
* Sending to a chat whose user never talked to the bot fails with "chat not found"
  (as for a real never-seen id) unless ``auto_create_chats`` is set or ``add_user`` was called.
* Markdown parse modes are accepted but not parsed (text is stored raw).

Layout (each file one job; ``TelegramEmulator`` combines the mixins):

* ``entities`` – Telegram HTML → entities, text length and inline keyboard checks.
* ``model`` – users, chats, messages with edit history, recorded calls, chat events.
* ``state`` – the shared state, update queue, call/event logs and change wake-ups.
* ``api`` – the Bot API methods; ``webhook`` – webhook mode and pushing updates.
* ``faults`` – scripted errors (429/5xx), dropped connections, delays, flood limits.
* ``control`` – acting as users; ``queries`` – what happened, and waiting for it.
* ``server`` – the HTTP server; ``wire`` – request decoding and error replies.
* The web chat page lives beside the package, in ``emulators/webchat.py``.
"""

from emulators.telegram.emulator import TelegramEmulator
from emulators.telegram.entities import (
    CALLBACK_DATA_LIMIT,
    TEXT_LIMIT,
    EntityParseError,
    parse_html,
    utf16_len,
)
from emulators.telegram.faults import Fault
from emulators.telegram.model import (
    Call,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    ChatEvent,
    InlineButton,
    Message,
    MessageVersion,
    User,
    WebhookDelivery,
    WebhookInfo,
)
from emulators.telegram.wire import ApiError

__all__ = [
    "CALLBACK_DATA_LIMIT",
    "TEXT_LIMIT",
    "ApiError",
    "Call",
    "CallbackAnswer",
    "CallbackQuery",
    "Chat",
    "ChatEvent",
    "EntityParseError",
    "Fault",
    "InlineButton",
    "Message",
    "MessageVersion",
    "TelegramEmulator",
    "User",
    "WebhookDelivery",
    "WebhookInfo",
    "parse_html",
    "utf16_len",
]
