"""The data the emulator keeps: users, chats, messages with edit history, calls, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Methods that long-poll: left out of call listings and of "*" faults.
POLLING_METHODS = frozenset({"getupdates"})

ChatEventKind = Literal["message", "edit", "delete", "callback_answer", "chat_action"]


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
    kind: ChatEventKind
    chat_id: int
    message_id: int | None
    at: float
    detail: dict[str, Any] = field(default_factory=dict)


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
