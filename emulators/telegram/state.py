"""The emulator's state: users and chats, the update queue, the call and event logs, wake-ups."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from emulators.telegram.model import (
    Call,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    ChatEvent,
    ChatEventKind,
    Message,
    User,
    WebhookInfo,
)
from emulators.telegram.wire import ApiError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

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


class EmulatorCore:
    """State shared by every part of the emulator; the mixins add behaviour on top.

    Each mixin that keeps state of its own extends ``_reset_state``; each that implements
    Bot API methods extends ``_api_methods``.
    """

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
        strict_html: reject bare ``&`` (see the package docstring).
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
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler) for name, handler in self._api_methods().items()
        }

    def _api_methods(self) -> dict[str, Handler]:
        """Bot API methods by their canonical name; each mixin adds the ones it implements."""
        return {}

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
        self.dropped_updates: list[dict[str, Any]] = []  # filtered out by allowed_updates
        self._calls: list[Call] = []
        self._events: list[ChatEvent] = []
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._updates: list[dict[str, Any]] = []
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES

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

    # ------------------------------------------------------------------ users and chats

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

    def _known_chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            if not self.auto_create_chats:
                raise LookupError(f"unknown chat {chat_id}; call add_user() first")
            self.add_user(chat_id)
            chat = self.chats[chat_id]
        return chat

    def message(self, chat_id: int, message_id: int) -> Message:
        try:
            return self.chats[chat_id].messages[message_id]
        except KeyError:
            raise LookupError(f"no message {message_id} in chat {chat_id}") from None

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

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """Commands set via setMyCommands for that scope/language."""
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope if isinstance(scope, dict) and scope else {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    # ------------------------------------------------------------------ updates and logs

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

    def _emit(
        self,
        kind: ChatEventKind,
        chat_id: int,
        message_id: int | None,
        **detail: Any,
    ) -> None:
        self._event_seq += 1
        self._events.append(
            ChatEvent(self._event_seq, kind, chat_id, message_id, self._clock(), detail)
        )
        self._bump()

    def _now(self) -> int:
        return int(self._clock())

    # ------------------------------------------------------------------ running a method

    async def _invoke(
        self,
        method: str,
        params: dict[str, Any],
        *,
        error: ApiError | None = None,
        dropped: bool = False,
        source: str = "http",
    ) -> tuple[int, dict[str, Any]]:
        """Run one API method and record it; returns (HTTP status, response body).

        ``error`` (a scripted fault) is answered instead of running the method.
        """
        entry = self._methods.get(method.lower())
        name = entry[0] if entry else method
        try:
            if entry is None:
                raise ApiError(404, "Not Found: method not found")
            if error is not None:
                raise error
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
