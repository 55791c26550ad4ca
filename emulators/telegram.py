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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import (
    BodyPartReader,
    ClientError,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    MultipartReader,
    web,
)

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

TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_TEXT_LIMIT = 200
MAX_INLINE_BUTTONS = 100

# Update types delivered when allowed_updates is an empty list (Telegram's default).
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)

# Form fields arrive as strings; these tell us how to decode them for recording/handling.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
        "reply_parameters",
        "message_ids",
        "media",
        "menu_button",
        "rights",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "user_id",
        "max_connections",
        "until_date",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "show_alert",
        "drop_pending_updates",
        "for_channels",
        "allow_paid_broadcast",
    }
)

# Methods that put something into a chat: subject to block() and the flood limit.
_DELIVERY_METHODS = frozenset({"sendmessage", "editmessagetext", "editmessagereplymarkup"})
_FLOOD_METHODS = frozenset({"sendmessage"})
_POLLING_METHODS = frozenset({"getupdates"})

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_BOT_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?(?=\s|$)")


class ApiError(Exception):
    """A Bot API error reply; ``status`` doubles as HTTP status and ``error_code``."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# --------------------------------------------------------------------------- HTML parsing


class EntityParseError(ValueError):
    """HTML that Telegram would refuse with "can't parse entities"."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit Telegram uses for entity offsets."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


_SUPPORTED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode ``&...`` at ``pos`` the way TDLib does (``;`` optional); None if not an entity."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and "0" <= text[end] <= "9":
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


@dataclass
class _OpenTag:
    name: str
    offset: int
    argument: str


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into (plain text, entities with UTF-16 offsets).

    Mirrors TDLib's parser and error messages (byte offsets are UTF-8). With ``strict``,
    a bare ``&`` outside attributes is an error (see module docstring).
    """
    out: list[str] = []
    pos16 = 0
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    n = len(text)

    def at(i: int) -> int:
        return len(text[:i].encode("utf-8"))

    def skip_spaces(i: int) -> int:
        while i < n and text[i].isspace():
            i += 1
        return i

    i = 0
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                out.append(decoded[0])
                pos16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
            if strict:
                raise EntityParseError(f'Unescaped "&" at byte offset {at(i)}')
        if ch != "<":
            out.append(ch)
            pos16 += utf16_len(ch)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n or text[i] != "/":
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = text[i:j].lower()
            if tag not in _SUPPORTED_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            i = j
            argument = ""
            while True:
                i = skip_spaces(i)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attr = text[name_begin:i].lower()
                if not attr:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}'
                    )
                i = skip_spaces(i)
                if i >= n or text[i] != "=":
                    if tag == "blockquote" and attr == "expandable":
                        argument = "expandable"
                        continue
                    raise EntityParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {at(begin)}'
                    )
                i = skip_spaces(i + 1)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] not in "'\"":
                    token_begin = i
                    while i < n and ((text[i].isascii() and text[i].isalnum()) or text[i] in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if i >= n or (not text[i].isspace() and text[i] != ">"):
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {at(token_begin)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    buf: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&" and (dec := _decode_html_entity(text, i)) is not None:
                            buf.append(dec[0])
                            i = dec[1]
                        else:
                            buf.append(text[i])
                            i += 1
                    if i >= n:
                        raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                    i += 1
                    value = "".join(buf)
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif (tag == "span" and attr == "class") or (
                    tag == "tg-emoji" and attr == "emoji-id"
                ):
                    argument = value
            i += 1
            if tag == "span" and argument != "tg-spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}'
                )
            stack.append(_OpenTag(tag, pos16, argument))
            continue
        # End tag.
        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {at(begin)}")
        i += 1
        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        end_name = text[i:j].lower()
        j = skip_spaces(j)
        if j >= n or text[j] != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {at(begin)}")
        expected = stack[-1].name
        if end_name and end_name != expected:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{expected}>", '
                f'found "</{end_name}>"'
            )
        i = j + 1
        opened = stack.pop()
        length = pos16 - opened.offset
        if length <= 0:
            continue
        entity: dict[str, Any] = {"offset": opened.offset, "length": length}
        if opened.name == "a":
            if not opened.argument:
                continue
            entity.update(type="text_link", url=opened.argument)
        elif opened.name == "pre":
            entity["type"] = "pre"
            if opened.argument:
                entity["language"] = opened.argument
        elif opened.name == "code" and stack and stack[-1].name == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            if opened.argument and not stack[-1].argument:
                stack[-1].argument = opened.argument
            continue
        elif opened.name == "blockquote":
            entity["type"] = "expandable_blockquote" if opened.argument else "blockquote"
        elif opened.name == "tg-emoji":
            if not opened.argument:
                continue
            entity.update(type="custom_emoji", custom_emoji_id=opened.argument)
        else:
            entity["type"] = _SIMPLE_ENTITY[opened.name]
        entities.append(entity)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# --------------------------------------------------------------------------- state model


@dataclass
class User:
    """A Telegram user (the bot itself is one too, with ``is_bot``)."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data


@dataclass
class InlineButton:
    """One inline keyboard button, flattened with its position for easy lookup."""

    text: str
    row: int
    column: int
    callback_data: str | None = None
    url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class MessageVersion:
    """A past state of a message, kept when it is edited."""

    text: str | None
    entities: tuple[dict[str, Any], ...]
    reply_markup: dict[str, Any] | None
    at: float
    method: str


@dataclass
class Message:
    """A message in a chat, from the bot or a user; edits mutate it and keep history."""

    chat: Chat = field(repr=False)
    message_id: int
    sender: User
    date: int
    text: str | None
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    source_text: str | None = None  # as submitted, e.g. the HTML before parsing
    parse_mode: str | None = None
    edit_date: int | None = None
    deleted: bool = False
    reply_to_message_id: int | None = None
    forward_origin: dict[str, Any] | None = None
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def chat_id(self) -> int:
        return self.chat.id

    @property
    def from_bot(self) -> bool:
        return self.sender.is_bot

    @property
    def edited(self) -> bool:
        return bool(self.history)

    @property
    def buttons(self) -> list[InlineButton]:
        """Inline keyboard buttons in reading order (empty for other markups)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [
            InlineButton(
                text=str(button.get("text", "")),
                row=r,
                column=c,
                callback_data=button.get("callback_data"),
                url=button.get("url"),
                raw=button,
            )
            for r, row in enumerate(rows)
            for c, button in enumerate(row)
        ]

    def button(self, text: str) -> InlineButton:
        """The button whose text equals ``text`` (or contains it, if no exact match)."""
        buttons = self.buttons
        for candidate in buttons:
            if candidate.text == text:
                return candidate
        for candidate in buttons:
            if text in candidate.text:
                return candidate
        raise LookupError(
            f"no button {text!r} on message {self.message_id}: {[b.text for b in buttons]}"
        )

    def to_api(self, *, with_reply: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender.to_api(),
            "chat": self.chat.to_api(),
            "date": self.date,
        }
        if self.forward_origin is not None:
            data["forward_origin"] = self.forward_origin
        if with_reply and self.reply_to_message_id is not None:
            replied = self.chat.messages.get(self.reply_to_message_id)
            if replied is not None:
                data["reply_to_message"] = replied.to_api(with_reply=False)
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.text is not None:
            data["text"] = self.text
        if self.entities:
            data["entities"] = list(self.entities)
        if self.reply_markup is not None and "inline_keyboard" in self.reply_markup:
            data["reply_markup"] = self.reply_markup  # only inline keyboards are echoed back
        return data


@dataclass
class Chat:
    """A chat with its own message id sequence (private chats share the user's id)."""

    id: int
    type: str = "private"
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    title: str | None = None
    messages: dict[int, Message] = field(default_factory=dict, repr=False)
    blocked: str | None = None  # 403 description while the user has blocked the bot
    last_message_id: int = 0

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "first_name", "last_name", "username"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id


@dataclass(frozen=True)
class Call:
    """One Bot API request as the emulator saw it, with its outcome."""

    seq: int
    method: str
    params: dict[str, Any]
    at: float
    status: int
    result: Any = None
    description: str | None = None
    retry_after: int | None = None
    dropped: bool = False  # the client never got the response
    source: str = "http"  # or "webhook-reply"

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.dropped

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass(frozen=True)
class CallbackAnswer:
    """What the bot answered to a callback query."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    at: float


@dataclass
class CallbackQuery:
    """A button press we injected, and its answer once the bot gives one."""

    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    at: float
    answer: CallbackAnswer | None = None


@dataclass(frozen=True)
class ChatEvent:
    """Append-only change log entry, so a UI can long-poll for what changed."""

    seq: int
    kind: Literal["message", "edit", "delete", "callback_answer", "chat_action"]
    chat_id: int
    message_id: int | None
    at: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    """A scripted failure for the next ``remaining`` matching calls."""

    method: str  # lower-case method name, or "*" for any method except getUpdates
    kind: Literal["error", "drop", "delay"]
    remaining: int
    chat_id: int | None = None
    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    after_processing: bool = False  # drop: execute the call, then lose the response
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, params: Mapping[str, Any]) -> bool:
        if self.remaining <= 0:
            return False
        if self.method == "*":
            if method in _POLLING_METHODS:
                return False
        elif self.method != method:
            return False
        return self.chat_id is None or params.get("chat_id") == self.chat_id


@dataclass
class WebhookInfo:
    """What setWebhook recorded; ``url`` empty means polling mode."""

    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to POST an update to a webhook."""

    update_id: int | None
    url: str
    status: int | None  # None: connection failed
    error: str | None
    at: float


_Handler = Callable[[dict[str, Any]], Awaitable[Any]]


# --------------------------------------------------------------------------- emulator


class TelegramEmulator:
    """In-process Telegram Bot API server with recording, update injection and fault scripts."""

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_id: int | None = None,
        bot_username: str = "leadpilot_test_bot",
        bot_name: str = "LeadPilot",
        strict_html: bool = True,
        auto_create_chats: bool = False,
        callback_query_ttl: float | None = None,
        webhook_retry_delay: float = 0.5,
        clock: Callable[[], float] = time.time,
        first_update_id: int = 1,
    ) -> None:
        """Args:
        token: accept only this token (others get 401); None accepts any token.
        bot_id: the bot's user id; defaults to the numeric prefix of ``token``.
        strict_html: reject bare ``&`` (see module docstring).
        auto_create_chats: let the bot send to never-seen chat ids.
        callback_query_ttl: seconds after which answerCallbackQuery is "too old".
        clock: wall clock for message dates (inject to control time).
        """
        if bot_id is None:
            prefix = (token or "").split(":", 1)[0]
            bot_id = int(prefix) if prefix.isdigit() else 7000000001
        self._token = token
        self.bot = User(id=bot_id, first_name=bot_name, username=bot_username, is_bot=True)
        self.strict_html = strict_html
        self.auto_create_chats = auto_create_chats
        self.callback_query_ttl = callback_query_ttl
        self.webhook_retry_delay = webhook_retry_delay
        self._clock = clock

        self._next_update_id = first_update_id
        self._query_counter = 0
        self._event_seq = 0
        self._poll_generation = 0
        self._reset_state()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._app_hooks: list[Callable[[web.Application], None]] = []
        self.host: str | None = None
        self.port: int | None = None

        self._methods: dict[str, tuple[str, _Handler]] = {}
        for name, handler in {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "logOut": self._true,
            "close": self._true,
            "setMyDescription": self._true,
            "setMyShortDescription": self._true,
            "setChatMenuButton": self._true,
        }.items():
            self._methods[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str:
        """A token the emulator accepts and whose prefix matches the bot id (aiogram checks)."""
        return self._token or f"{self.bot.id}:emulator-token"

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port); returns ``base_url``.

        May be called again after ``stop()`` (e.g. with the old port) to emulate an outage;
        state survives restarts.
        """
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_http)
        for hook in self._app_hooks:
            hook(app)
        # handler_cancellation: a poller that hangs up must not keep a long-poll open.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._closing = False
        self.host = host
        self.port = int(runner.addresses[0][1])
        if self.webhook.url:
            self._ensure_webhook_task()
        return self.base_url

    def add_app_hook(self, hook: Callable[[web.Application], None]) -> None:
        """Run ``hook(app)`` on the server's aiohttp app at every ``start()``.

        Why: extra pages (the web chat) can share the emulator's port; a fresh app is built
        on each start, and aiohttp freezes routes once serving, so hooks must come first.
        """
        if self._runner is not None:
            raise RuntimeError("add app hooks before start()")
        self._app_hooks.append(hook)

    async def stop(self) -> None:
        """Stop listening; pending long-polls return empty first so shutdown is quick."""
        self._closing = True
        self._bump()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TelegramEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def reset(self) -> None:
        """Forget all users, chats, updates, recordings, faults and settings between tests.

        Ids keep increasing (update_id, callback query ids, event seq) so a client that is
        still running never sees an id go backwards; ``call_count`` marks are invalidated.
        """
        self._reset_state()
        self._bump()

    def _reset_state(self) -> None:
        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.callback_queries: dict[str, CallbackQuery] = {}
        self.callback_answers: list[CallbackAnswer] = []
        self.webhook = WebhookInfo()
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.dropped_updates: list[dict[str, Any]] = []  # filtered out by allowed_updates
        self.faults: list[Fault] = []
        self._calls: list[Call] = []
        self._events: list[ChatEvent] = []
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._updates: list[dict[str, Any]] = []
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._flood_global: float | None = None
        self._flood_per_chat: float | None = None
        self._flood_retry_after = 1
        self._flood_log: deque[tuple[float, int]] = deque()

    # ------------------------------------------------------------------ change notification

    def _bump(self) -> None:
        """Wake every waiter; each re-checks its own condition."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_until(self, check: Callable[[], Any], timeout: float | None) -> Any:
        """Return the first truthy ``check()``; raise TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                event = self._changed
                if (value := check()) is not None and value is not False:
                    return value
                await event.wait()

    # ------------------------------------------------------------------ users and injection

    def add_user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> User:
        """Register a user and their private chat (idempotent; given names update it)."""
        user = self.users.get(user_id)
        if user is None:
            user = User(
                id=user_id,
                first_name=first_name or f"User{user_id}",
                last_name=last_name,
                username=username,
                language_code=language_code,
            )
            self.users[user_id] = user
        else:
            if first_name is not None:
                user.first_name = first_name
            if last_name is not None:
                user.last_name = last_name
            if username is not None:
                user.username = username
        chat = self.chats.get(user_id)
        if chat is None:
            chat = Chat(id=user_id)
            self.chats[user_id] = chat
        chat.first_name, chat.last_name, chat.username = (
            user.first_name,
            user.last_name,
            user.username,
        )
        return user

    def user_says(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> Message:
        """A user types ``text`` in the private chat; queues a ``message`` update.

        A leading ``/command`` gets a ``bot_command`` entity, as Telegram adds one.
        """
        user = self.add_user(user_id, first_name, last_name=last_name, username=username)
        entities: list[dict[str, Any]] = []
        if match := _BOT_COMMAND_RE.match(text):
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(match[0])})
        message = self._store_message(
            self.chats[user_id],
            user,
            text,
            entities,
            reply_to_message_id=reply_to_message_id,
        )
        self._enqueue("message", message.to_api())
        return message

    def forward(
        self,
        user_id: int,
        text: str,
        *,
        origin_name: str = "Hidden Sender",
        origin_user_id: int | None = None,
        origin_username: str | None = None,
        origin_chat_title: str | None = None,
        origin_date: int | None = None,
        first_name: str | None = None,
    ) -> Message:
        """The user forwards someone else's message to the bot (``forward_origin`` set).

        ``origin_user_id`` → a visible user; ``origin_chat_title`` → a channel post;
        otherwise a user who hides their account (only ``origin_name`` is known).
        """
        user = self.add_user(user_id, first_name)
        date = origin_date if origin_date is not None else self._now() - 3600
        origin: dict[str, Any]
        if origin_user_id is not None:
            parts = origin_name.split(" ", 1)
            sender = User(
                id=origin_user_id,
                first_name=parts[0],
                last_name=parts[1] if len(parts) > 1 else None,
                username=origin_username,
            )
            origin = {"type": "user", "sender_user": sender.to_api(), "date": date}
        elif origin_chat_title is not None:
            channel = {
                "id": -1001000000000 - user_id,
                "type": "channel",
                "title": origin_chat_title,
            }
            origin = {"type": "channel", "chat": channel, "message_id": 1, "date": date}
        else:
            origin = {"type": "hidden_user", "sender_user_name": origin_name, "date": date}
        message = self._store_message(self.chats[user_id], user, text, [], forward_origin=origin)
        self._enqueue("message", message.to_api())
        return message

    def press(
        self,
        user_id: int,
        message_id: int,
        callback_data: str,
        *,
        chat_id: int | None = None,
        first_name: str | None = None,
    ) -> str:
        """``user_id`` presses a button carrying ``callback_data`` on a message.

        The data is not checked against the keyboard, so tests can forge presses (and press
        messages in someone else's chat via ``chat_id``). Returns the callback query id.
        """
        user = self.add_user(user_id, first_name)
        chat = self.chats.get(chat_id if chat_id is not None else user_id)
        if chat is None:
            raise LookupError(f"unknown chat {chat_id}")
        message = chat.messages.get(message_id)
        self._query_counter += 1
        query_id = str(4_200_000_000_000_000 + self._query_counter)
        payload: dict[str, Any] = {
            "id": query_id,
            "from": user.to_api(),
            "chat_instance": str(-(abs(chat.id) * 7919 + 13)),
            "data": callback_data,
        }
        if message is not None and not message.deleted:
            payload["message"] = message.to_api()
        else:  # Bot API "InaccessibleMessage"
            payload["message"] = {"chat": chat.to_api(), "message_id": message_id, "date": 0}
        self.callback_queries[query_id] = CallbackQuery(
            id=query_id,
            user_id=user_id,
            chat_id=chat.id,
            message_id=message_id,
            data=callback_data,
            at=self._clock(),
        )
        self._enqueue("callback_query", payload)
        return query_id

    def press_button(
        self, user_id: int, message_id: int, text: str, *, chat_id: int | None = None
    ) -> str:
        """Press the callback button labelled ``text`` on a bot message."""
        message = self.message(chat_id if chat_id is not None else user_id, message_id)
        button = message.button(text)
        if button.callback_data is None:
            raise LookupError(f"button {button.text!r} has no callback_data")
        return self.press(user_id, message_id, button.callback_data, chat_id=chat_id)

    def block(
        self,
        chat_id: int,
        description: str = "Forbidden: bot was blocked by the user",
        *,
        notify: bool = False,
    ) -> None:
        """Every delivery to ``chat_id`` fails with 403 until ``unblock``.

        ``notify`` also queues the ``my_chat_member`` (member → kicked) update Telegram sends.
        """
        chat = self._known_chat(chat_id)
        chat.blocked = description
        if notify:
            self._enqueue_member_change(chat, "member", "kicked")

    def unblock(self, chat_id: int, *, notify: bool = False) -> None:
        chat = self._known_chat(chat_id)
        chat.blocked = None
        if notify:
            self._enqueue_member_change(chat, "kicked", "member")

    def _enqueue_member_change(self, chat: Chat, old: str, new: str) -> None:
        user = self.users.get(chat.id) or User(id=chat.id, first_name=chat.first_name or "User")
        member_extra = {"until_date": 0} if new == "kicked" else {}
        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.to_api(),
                "from": user.to_api(),
                "date": self._now(),
                "old_chat_member": {"status": old, "user": self.bot.to_api()}
                | ({"until_date": 0} if old == "kicked" else {}),
                "new_chat_member": {"status": new, "user": self.bot.to_api()} | member_extra,
            },
        )

    def inject_update(self, kind: str, payload: dict[str, Any]) -> int | None:
        """Queue an arbitrary update (``kind`` is its field name); returns its update_id."""
        return self._enqueue(kind, payload)

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int | None:
        update: dict[str, Any] = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        if self.webhook.url:
            allowed = frozenset(self.webhook.allowed_updates or ()) or DEFAULT_ALLOWED_UPDATES
        else:
            allowed = self._allowed_updates
        if kind not in allowed:
            self.dropped_updates.append(update)
            return None
        self._updates.append(update)
        self._bump()
        return int(update["update_id"])

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot."""
        return list(self._updates)

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        count: int = 1,
        chat_id: int | None = None,
    ) -> Fault:
        """The next ``count`` calls of ``method`` ("*" = any) fail with ``status``.

        429 gets ``parameters.retry_after`` (default 1) and Telegram's description.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else _DEFAULT_DESCRIPTIONS.get(status, "Error")
            )
        fault = Fault(
            method=method.lower(),
            kind="error",
            remaining=count,
            chat_id=chat_id,
            status=status,
            description=description,
            retry_after=retry_after,
        )
        self.faults.append(fault)
        return fault

    def drop_next(
        self,
        method: str,
        count: int = 1,
        *,
        after_processing: bool = False,
        chat_id: int | None = None,
    ) -> Fault:
        """Close the connection without answering the next ``count`` calls of ``method``.

        With ``after_processing`` the call takes effect (a message is really sent) and only
        the response is lost: the case that produces duplicates if the client retries.
        """
        fault = Fault(
            method=method.lower(),
            kind="drop",
            remaining=count,
            chat_id=chat_id,
            after_processing=after_processing,
        )
        self.faults.append(fault)
        return fault

    def delay_next(
        self,
        method: str,
        seconds: float,
        count: int = 1,
        *,
        after_processing: bool = False,
        chat_id: int | None = None,
    ) -> Fault:
        """Hold the next ``count`` calls of ``method`` for ``seconds``.

        The delay comes before handling, or with ``after_processing`` between handling and
        responding: a client that times out then has still sent the message.
        """
        fault = Fault(
            method=method.lower(),
            kind="delay",
            remaining=count,
            chat_id=chat_id,
            delay=seconds,
            after_processing=after_processing,
        )
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_flood_limit(
        self,
        per_second: float | None = None,
        *,
        per_chat_per_second: float | None = None,
        retry_after: int = 1,
    ) -> None:
        """Answer 429 when sendMessage exceeds these rates over a sliding one-second window."""
        self._flood_global = per_second
        self._flood_per_chat = per_chat_per_second
        self._flood_retry_after = retry_after

    def _take_fault(self, method: str, params: Mapping[str, Any]) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, params):
                fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    # ------------------------------------------------------------------ queries for tests

    def calls(
        self,
        method: str | None = None,
        *,
        chat_id: int | None = None,
        ok: bool | None = None,
        include_polling: bool = False,
    ) -> list[Call]:
        """Recorded calls, oldest first; getUpdates only when asked for."""
        wanted = method.lower() if method else None
        return [
            call
            for call in self._calls
            if (
                call.method.lower() == wanted
                if wanted
                else include_polling or call.method.lower() not in _POLLING_METHODS
            )
            and (chat_id is None or call.chat_id == chat_id)
            and (ok is None or call.ok == ok)
        ]

    @property
    def call_count(self) -> int:
        """Number of calls recorded so far; pass as ``since`` to ``wait_for``."""
        return len(self._calls)

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """First recorded call (index ≥ ``since``) matching ``predicate``; waits if needed."""

        def find() -> Call | None:
            for call in self._calls[since:]:
                if predicate(call):
                    return call
            return None

        try:
            result: Call = await self._wait_until(find, timeout)
        except TimeoutError:
            seen = [f"{c.method}({c.params.get('text', '')!r})" for c in self._calls[since:]]
            raise TimeoutError(f"no matching call within {timeout}s; saw {seen}") from None
        return result

    async def wait_for_message(
        self,
        chat_id: int,
        contains: str | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Message:
        """Wait for a successful bot sendMessage to ``chat_id`` (optionally containing text)."""
        call = await self.wait_for(
            lambda c: (
                c.method == "sendMessage"
                and c.status == 200
                and c.chat_id == chat_id
                and (contains is None or contains in str(c.result.get("text", "")))
            ),
            timeout,
            since=since,
        )
        return self.message(chat_id, int(call.result["message_id"]))

    async def wait_answered(self, callback_query_id: str, timeout: float = 5.0) -> CallbackAnswer:
        """Wait until the bot answers the callback query."""
        query = self.callback_queries[callback_query_id]
        result: CallbackAnswer = await self._wait_until(lambda: query.answer, timeout)
        return result

    def unanswered_queries(self) -> list[CallbackQuery]:
        """Injected callback queries the bot has not answered (every one should be)."""
        return [q for q in self.callback_queries.values() if q.answer is None]

    def was_answered(self, callback_query_id: str) -> bool:
        query = self.callback_queries.get(callback_query_id)
        return query is not None and query.answer is not None

    def sent(self, chat_id: int | None = None) -> list[Message]:
        """Messages the bot sent (current state, deleted ones included), oldest first."""
        if chat_id is None:
            chats = list(self.chats.values())
        else:
            chats = [self.chats[chat_id]] if chat_id in self.chats else []
        return [m for chat in chats for m in chat.messages.values() if m.from_bot]

    def history(self, chat_id: int) -> list[Message]:
        """The visible conversation (both sides, without deleted messages)."""
        chat = self.chats.get(chat_id)
        return [m for m in chat.messages.values() if not m.deleted] if chat else []

    def message(self, chat_id: int, message_id: int) -> Message:
        try:
            return self.chats[chat_id].messages[message_id]
        except KeyError:
            raise LookupError(f"no message {message_id} in chat {chat_id}") from None

    def last_sent(self, chat_id: int) -> Message:
        messages = self.sent(chat_id)
        if not messages:
            raise LookupError(f"the bot sent nothing to chat {chat_id}")
        return messages[-1]

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """Commands set via setMyCommands for that scope/language."""
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    def peak_rate(self, method: str = "sendMessage", window: float = 1.0) -> int:
        """Most successful ``method`` calls within any ``window`` seconds (rate-limit checks)."""
        times = [c.at for c in self.calls(method) if c.ok]
        best = start = 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def events(self, since: int = 0, chat_id: int | None = None) -> list[ChatEvent]:
        """Chat changes with ``seq`` > ``since`` (for a UI that long-polls)."""
        return [
            e for e in self._events if e.seq > since and (chat_id is None or e.chat_id == chat_id)
        ]

    async def wait_events(
        self, since: int = 0, timeout: float = 25.0, chat_id: int | None = None
    ) -> list[ChatEvent]:
        """Like ``events`` but waits up to ``timeout`` for at least one; [] on timeout.

        Also [] at once while the server is stopping, so a page's long-poll cannot hold
        up ``stop()``.
        """
        try:
            result: list[ChatEvent] | bool = await self._wait_until(
                lambda: self.events(since, chat_id) or self._closing or None, timeout
            )
        except TimeoutError:
            return []
        return result if isinstance(result, list) else []

    # ------------------------------------------------------------------ webhook side

    async def post_update_to(
        self,
        url: str,
        secret_token: str | None = None,
        *,
        update: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> int:
        """POST one update to a webhook URL the way Telegram does; returns the HTTP status.

        Without ``update`` the oldest pending update is sent and confirmed on a 2xx reply.
        A method in the reply body (webhook reply) is executed like a normal call.
        """
        if update is None:
            if not self._updates:
                raise LookupError("no pending update to post")
            update = self._updates[0]
            from_queue = True
        else:
            from_queue = False
        async with ClientSession(timeout=ClientTimeout(total=timeout)) as session:
            status = await self._post_update(session, url, secret_token, update)
        if from_queue and 200 <= status < 300 and self._updates and self._updates[0] is update:
            self._updates.pop(0)
            self._bump()
        return status

    async def _post_update(
        self, session: ClientSession, url: str, secret: str | None, update: dict[str, Any]
    ) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        reply: dict[str, Any] | None = None
        try:
            async with session.post(url, json=update, headers=headers) as response:
                status = response.status
                if 200 <= status < 300:
                    reply = await _read_webhook_reply(response)
        except (ClientError, TimeoutError) as exc:
            self.webhook_deliveries.append(
                WebhookDelivery(update.get("update_id"), url, None, repr(exc), self._clock())
            )
            raise
        self.webhook_deliveries.append(
            WebhookDelivery(update.get("update_id"), url, status, None, self._clock())
        )
        if reply is not None and isinstance(reply.get("method"), str):
            # Telegram executes a method returned in the webhook response body.
            params = {k: v for k, v in reply.items() if k != "method"}
            try:
                decoded = _decode_params(params)
            except ApiError:
                return status
            await self._invoke(reply["method"], decoded, source="webhook-reply")
        return status

    def _ensure_webhook_task(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def _webhook_loop(self) -> None:
        """Push pending updates to the registered webhook, one at a time, retrying failures."""
        async with ClientSession(timeout=ClientTimeout(total=30)) as session:
            while self.webhook.url and not self._closing:
                if not self._updates:
                    with contextlib.suppress(TimeoutError):
                        await self._wait_until(
                            lambda: bool(self._updates) or not self.webhook.url, None
                        )
                    continue
                update, url = self._updates[0], self.webhook.url
                try:
                    status = await self._post_update(
                        session, url, self.webhook.secret_token, update
                    )
                except (ClientError, TimeoutError) as exc:
                    self.webhook.last_error_date = self._now()
                    self.webhook.last_error_message = f"Connection failed: {exc}"
                    await asyncio.sleep(self.webhook_retry_delay)
                    continue
                if 200 <= status < 300:
                    if self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                        self._bump()
                else:
                    self.webhook.last_error_date = self._now()
                    self.webhook.last_error_message = f"Wrong response from the webhook: {status}"
                    await asyncio.sleep(self.webhook_retry_delay)

    # ------------------------------------------------------------------ HTTP plumbing

    def _token_ok(self, token: str) -> bool:
        if self._token is not None:
            return token == self._token
        prefix, _, rest = token.partition(":")
        return prefix.isdigit() and bool(rest)

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        token, method = request.match_info["token"], request.match_info["method"]
        if not self._token_ok(token):
            return _json_response(ApiError(401, "Unauthorized").payload(), 401)
        try:
            params = await _read_params(request)
        except ApiError as exc:
            self._record(self._canonical(method), {}, exc.status, description=exc.description)
            return _json_response(exc.payload(), exc.status)
        fault = self._take_fault(method.lower(), params)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            self._record(
                self._canonical(method), params, 0, description="connection dropped", dropped=True
            )
            return _drop(request)
        delay = fault.delay if fault is not None and fault.kind == "delay" else 0.0
        if delay and fault is not None and not fault.after_processing:
            await asyncio.sleep(delay)
        error_fault = fault if fault is not None and fault.kind == "error" else None
        dropped = fault is not None and fault.kind == "drop"
        status, payload = await self._invoke(method, params, fault=error_fault, dropped=dropped)
        if dropped:
            return _drop(request)
        if delay and fault is not None and fault.after_processing:
            await asyncio.sleep(delay)
        return _json_response(payload, status)

    async def _invoke(
        self,
        method: str,
        params: dict[str, Any],
        *,
        fault: Fault | None = None,
        dropped: bool = False,
        source: str = "http",
    ) -> tuple[int, dict[str, Any]]:
        """Run one API method and record it; returns (HTTP status, response body)."""
        entry = self._methods.get(method.lower())
        name = entry[0] if entry else method
        try:
            if entry is None:
                raise ApiError(404, "Not Found: method not found")
            if fault is not None:
                raise ApiError(fault.status, fault.description, fault.retry_after)
            result = await entry[1](params)
        except ApiError as exc:
            self._record(
                name,
                params,
                exc.status,
                description=exc.description,
                retry_after=exc.retry_after,
                dropped=dropped,
                source=source,
            )
            return exc.status, exc.payload()
        self._record(name, params, 200, result=result, dropped=dropped, source=source)
        return 200, {"ok": True, "result": result}

    def _canonical(self, method: str) -> str:
        entry = self._methods.get(method.lower())
        return entry[0] if entry else method

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        status: int,
        *,
        result: Any = None,
        description: str | None = None,
        retry_after: int | None = None,
        dropped: bool = False,
        source: str = "http",
    ) -> None:
        self._calls.append(
            Call(
                seq=len(self._calls),
                method=method,
                params=params,
                at=self._clock(),
                status=status,
                result=result,
                description=description,
                retry_after=retry_after,
                dropped=dropped,
                source=source,
            )
        )
        self._bump()

    # ------------------------------------------------------------------ helpers

    def _now(self) -> int:
        return int(self._clock())

    def _known_chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            if not self.auto_create_chats:
                raise LookupError(f"unknown chat {chat_id}; call add_user() first")
            self.add_user(chat_id)
            chat = self.chats[chat_id]
        return chat

    def _emit(
        self,
        kind: Literal["message", "edit", "delete", "callback_answer", "chat_action"],
        chat_id: int,
        message_id: int | None,
        **detail: Any,
    ) -> None:
        self._event_seq += 1
        self._events.append(
            ChatEvent(self._event_seq, kind, chat_id, message_id, self._clock(), detail)
        )
        self._bump()

    def _store_message(
        self,
        chat: Chat,
        sender: User,
        text: str,
        entities: list[dict[str, Any]],
        *,
        reply_markup: dict[str, Any] | None = None,
        source_text: str | None = None,
        parse_mode: str | None = None,
        reply_to_message_id: int | None = None,
        forward_origin: dict[str, Any] | None = None,
    ) -> Message:
        message = Message(
            chat=chat,
            message_id=chat.next_message_id(),
            sender=sender,
            date=self._now(),
            text=text,
            entities=entities,
            reply_markup=reply_markup,
            source_text=source_text if source_text is not None else text,
            parse_mode=parse_mode,
            reply_to_message_id=reply_to_message_id,
            forward_origin=forward_origin,
        )
        chat.messages[message.message_id] = message
        self._emit("message", chat.id, message.message_id)
        return message

    def _chat_param(self, params: Mapping[str, Any], *, deliver: bool) -> Chat:
        """Resolve chat_id (int or @username); ``deliver`` applies block() state."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        chat: Chat | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            chat = self.chats.get(raw)
            if chat is None and self.auto_create_chats:
                self.add_user(raw)
                chat = self.chats[raw]
        elif isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self.chats.values() if c.username == raw[1:]), None)
        if chat is None:
            raise _bad("chat not found")
        if deliver and chat.blocked:
            raise ApiError(403, chat.blocked)
        return chat

    def _message_param(self, params: Mapping[str, Any], chat: Chat, missing: str) -> Message:
        if params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")  # inline mode is not emulated
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise _bad(missing)
        return message

    def _render_text(self, params: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
        """Validate text + parse_mode/entities → (plain text, entities, source text)."""
        source = params.get("text")
        if not isinstance(source, str) or not source.strip():
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode")
        entities: list[dict[str, Any]] = []
        plain = source
        if isinstance(parse_mode, str) and parse_mode:
            mode = parse_mode.lower()
            if mode == "html":
                try:
                    plain, entities = parse_html(source, strict=self.strict_html)
                except EntityParseError as exc:
                    raise _bad(f"can't parse entities: {exc}") from None
            elif mode not in ("markdown", "markdownv2"):
                raise _bad(f"unsupported parse_mode {parse_mode!r}")
        elif isinstance(params.get("entities"), list):
            entities = list(params["entities"])
        if not plain.strip():
            raise _bad("message text is empty")
        if utf16_len(plain) > TEXT_LIMIT:
            raise _bad("message is too long")
        return plain, entities, source

    def _check_flood(self, chat_id: int) -> None:
        if self._flood_global is None and self._flood_per_chat is None:
            return
        now = time.monotonic()
        while self._flood_log and now - self._flood_log[0][0] >= 1.0:
            self._flood_log.popleft()
        in_chat = sum(1 for _, cid in self._flood_log if cid == chat_id)
        if (self._flood_global is not None and len(self._flood_log) >= self._flood_global) or (
            self._flood_per_chat is not None and in_chat >= self._flood_per_chat
        ):
            raise ApiError(
                429,
                f"Too Many Requests: retry after {self._flood_retry_after}",
                self._flood_retry_after,
            )
        self._flood_log.append((now, chat_id))

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope if isinstance(scope, dict) and scope else {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    # ------------------------------------------------------------------ API methods

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot.to_api() | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = params.get("limit")
        limit = min(max(limit, 1), 100) if isinstance(limit, int) else 100
        timeout = params.get("timeout")
        timeout = max(timeout, 0) if isinstance(timeout, int) else 0
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(map(str, allowed)) or DEFAULT_ALLOWED_UPDATES
        if isinstance(offset, int) and offset != 0:
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            else:
                self._updates = self._updates[offset:]
        # A newer getUpdates terminates an older one, as Telegram does.
        self._poll_generation += 1
        generation = self._poll_generation
        self._bump()

        def ready() -> bool:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            return bool(self._updates) or self._closing

        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await self._wait_until(ready, timeout)
        return [dict(u) for u in self._updates[:limit]]

    def _parse_reply_markup(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return markup  # reply keyboards etc.: stored as given, not validated
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse reply keyboard markup JSON object")
        total = 0
        for row in rows:
            for button in row:
                total += 1
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad("can't parse inline keyboard button: Text must be a String")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= (
                        CALLBACK_DATA_LIMIT
                    ):
                        raise _bad("BUTTON_DATA_INVALID")
                elif "url" in button:
                    url = button["url"]
                    if not isinstance(url, str) or not re.match(r"^(https?|tg)://\S+$", url):
                        raise _bad("BUTTON_URL_INVALID")
                elif not (set(button) - {"text"}):
                    raise _bad(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
        if total > MAX_INLINE_BUTTONS:
            raise _bad("reply markup is too long")
        return markup

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=False)
        plain, entities, source = self._render_text(params)
        markup = self._parse_reply_markup(params)
        reply_to = params.get("reply_to_message_id")
        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id")
            allow_missing = bool(reply_parameters.get("allow_sending_without_reply"))
        if isinstance(reply_to, int) and reply_to not in chat.messages:
            if not allow_missing:
                raise _bad("message to be replied not found")
            reply_to = None
        if chat.blocked:
            raise ApiError(403, chat.blocked)
        self._check_flood(chat.id)
        message = self._store_message(
            chat,
            self.bot,
            plain,
            entities,
            reply_markup=markup,
            source_text=source,
            parse_mode=params.get("parse_mode"),
            reply_to_message_id=reply_to if isinstance(reply_to, int) else None,
        )
        return message.to_api()

    def _apply_edit(
        self,
        message: Message,
        method: str,
        text: str | None,
        entities: list[dict[str, Any]],
        markup: dict[str, Any] | None,
        source: str | None,
        parse_mode: str | None,
    ) -> dict[str, Any]:
        if not message.from_bot:
            raise _bad("message can't be edited")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        message.history.append(
            MessageVersion(
                message.text,
                tuple(message.entities),
                message.reply_markup,
                self._clock(),
                method,
            )
        )
        message.text, message.entities, message.reply_markup = text, entities, markup
        if source is not None:
            message.source_text, message.parse_mode = source, parse_mode
        message.edit_date = self._now()
        self._emit("edit", message.chat_id, message.message_id, method=method)
        return message.to_api()

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=True)
        message = self._message_param(params, chat, "message to edit not found")
        plain, entities, source = self._render_text(params)
        markup = self._parse_reply_markup(params)  # omitted → the keyboard is removed
        return self._apply_edit(
            message, "editMessageText", plain, entities, markup, source, params.get("parse_mode")
        )

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=True)
        message = self._message_param(params, chat, "message to edit not found")
        markup = self._parse_reply_markup(params)
        return self._apply_edit(
            message,
            "editMessageReplyMarkup",
            message.text,
            message.entities,
            markup,
            None,
            None,
        )

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat = self._chat_param(params, deliver=False)
        message = self._message_param(params, chat, "message to delete not found")
        message.deleted = True
        self._emit("delete", chat.id, message.message_id)
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = self.callback_queries.get(query_id)
        expired = (
            query is not None
            and self.callback_query_ttl is not None
            and self._clock() - query.at > self.callback_query_ttl
        )
        if query is None or query.answer is not None or expired:
            raise ApiError(400, _QUERY_INVALID)
        text = params.get("text")
        if isinstance(text, str) and len(text) > CALLBACK_ANSWER_TEXT_LIMIT:
            raise _bad("MESSAGE_TOO_LONG")
        cache_time = params.get("cache_time")
        answer = CallbackAnswer(
            callback_query_id=query_id,
            text=text if isinstance(text, str) else None,
            show_alert=params.get("show_alert") is True,
            url=params.get("url"),
            cache_time=cache_time if isinstance(cache_time, int) else None,
            at=self._clock(),
        )
        query.answer = answer
        self.callback_answers.append(answer)
        self._emit(
            "callback_answer",
            query.chat_id,
            query.message_id,
            callback_query_id=query_id,
            text=answer.text,
            show_alert=answer.show_alert,
        )
        return True

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat = self._chat_param(params, deliver=True)
        action = params.get("action")
        if not isinstance(action, str) or not action:
            raise _bad("action is empty")
        self._emit("chat_action", chat.id, None, action=action)
        return True

    async def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=False)
        return chat.to_api() | {
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands")
        cleaned = []
        for item in commands:
            if not isinstance(item, dict) or not _COMMAND_RE.match(str(item.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            description = item.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": item["command"], "description": description})
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands(params.get("scope"), str(params.get("language_code") or ""))

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self._commands.pop(
            self._commands_key(params.get("scope"), params.get("language_code")), None
        )
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if not isinstance(url, str):
            raise _bad("bad webhook: Failed to resolve host")
        if url and not re.match(r"^https?://\S+$", url):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.match(r"^[A-Za-z0-9_-]{1,256}$", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        allowed = params.get("allowed_updates")
        max_connections = params.get("max_connections")
        self.webhook = WebhookInfo(
            url=url,
            secret_token=str(secret) if secret is not None else None,
            max_connections=max_connections if isinstance(max_connections, int) else 40,
            allowed_updates=[str(a) for a in allowed] if isinstance(allowed, list) else None,
            ip_address="127.0.0.1" if url else None,
        )
        self._poll_generation += 1  # pending getUpdates end with a conflict
        self._bump()
        if url:
            self._ensure_webhook_task()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        self.webhook = WebhookInfo()
        self._bump()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook.url:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.ip_address:
                info["ip_address"] = self.webhook.ip_address
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
        if self.webhook.last_error_date is not None:
            info["last_error_date"] = self.webhook.last_error_date
            info["last_error_message"] = self.webhook.last_error_message
        return info


# --------------------------------------------------------------------------- wire helpers


def _json_response(payload: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        text=json.dumps(payload, ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def _drop(request: web.Request) -> web.Response:
    """Close the socket so the client sees a disconnect instead of a response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def _read_webhook_reply(response: ClientResponse) -> dict[str, Any] | None:
    """Parse a webhook response body: JSON, or multipart form as aiogram sends it."""
    if response.content_type.startswith("multipart/"):
        fields: dict[str, Any] = {}
        reader = MultipartReader(response.headers, response.content)
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name:
                fields[part.name] = await part.text()
        return fields
    body = await response.read()
    try:
        reply = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _decode_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad("can't parse reply keyboard markup JSON object") from None
            raise _bad(f"can't parse {name} JSON object") from None
    if name in _INT_FIELDS and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if name in _BOOL_FIELDS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value


def _decode_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Typed parameters from form strings (aiogram JSON-encodes nested objects)."""
    return {name: _decode_value(name, value) for name, value in raw.items()}


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Query string + JSON, urlencoded or multipart body, like the real Bot API accepts."""
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise _bad("request body must be a JSON object")
            raw.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    raw[key] = value
                else:  # uploads are not emulated; keep a marker so the call is still recorded
                    raw[key] = f"<file {getattr(value, 'filename', key)}>"
    return _decode_params(raw)
