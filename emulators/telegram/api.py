"""The Bot API methods the bot calls: getUpdates, messages, callback answers, commands."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from emulators.telegram.entities import parse_reply_markup, render_text
from emulators.telegram.faults import FaultsMixin
from emulators.telegram.model import CallbackAnswer, Chat, Message, MessageVersion
from emulators.telegram.state import DEFAULT_ALLOWED_UPDATES, Handler
from emulators.telegram.wire import ApiError, bad

CALLBACK_ANSWER_TEXT_LIMIT = 200

_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class BotApiMixin(FaultsMixin):
    """Handlers of the Bot API methods (webhook ones aside), each ``params`` → result."""

    def _api_methods(self) -> dict[str, Handler]:
        return super()._api_methods() | {
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
            "logOut": self._true,
            "close": self._true,
            "setMyDescription": self._true,
            "setMyShortDescription": self._true,
            "setChatMenuButton": self._true,
        }

    def _chat_param(self, params: Mapping[str, Any], *, deliver: bool) -> Chat:
        """Resolve chat_id (int or @username); ``deliver`` applies block() state."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad("chat_id is empty")
        chat: Chat | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            chat = self.chats.get(raw)
            if chat is None and self.auto_create_chats:
                self.add_user(raw)
                chat = self.chats[raw]
        elif isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self.chats.values() if c.username == raw[1:]), None)
        if chat is None:
            raise bad("chat not found")
        if deliver and chat.blocked:
            raise ApiError(403, chat.blocked)
        return chat

    def _message_param(self, params: Mapping[str, Any], chat: Chat, missing: str) -> Message:
        if params.get("inline_message_id"):
            raise bad("MESSAGE_ID_INVALID")  # inline mode is not emulated
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise bad("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise bad(missing)
        return message

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

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=False)
        plain, entities, source = render_text(params, strict=self.strict_html)
        markup = parse_reply_markup(params)
        reply_to = params.get("reply_to_message_id")
        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id")
            allow_missing = bool(reply_parameters.get("allow_sending_without_reply"))
        if isinstance(reply_to, int) and reply_to not in chat.messages:
            if not allow_missing:
                raise bad("message to be replied not found")
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
            raise bad("message can't be edited")
        if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
            raise bad(_NOT_MODIFIED[len("Bad Request: ") :])
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
        plain, entities, source = render_text(params, strict=self.strict_html)
        markup = parse_reply_markup(params)  # omitted → the keyboard is removed
        return self._apply_edit(
            message, "editMessageText", plain, entities, markup, source, params.get("parse_mode")
        )

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_param(params, deliver=True)
        message = self._message_param(params, chat, "message to edit not found")
        markup = parse_reply_markup(params)
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
            raise bad("MESSAGE_TOO_LONG")
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
            raise bad("action is empty")
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
            raise bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad("too many commands")
        cleaned = []
        for item in commands:
            if not isinstance(item, dict) or not _COMMAND_RE.match(str(item.get("command", ""))):
                raise bad("BOT_COMMAND_INVALID")
            description = item.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
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
