"""Driving the emulator as users do: messages, forwards, button presses, blocking the bot."""

from __future__ import annotations

import re
from typing import Any

from emulators.telegram.entities import utf16_len
from emulators.telegram.model import CallbackQuery, Chat, Message, User
from emulators.telegram.state import EmulatorCore

_BOT_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?(?=\s|$)")


class ControlMixin(EmulatorCore):
    """What tests and the web chat call to act as Telegram users; each action queues updates."""

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
        return self._user_message(user, text, entities, reply_to_message_id=reply_to_message_id)

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
        return self._user_message(user, text, [], forward_origin=origin)

    def _user_message(
        self,
        user: User,
        text: str,
        entities: list[dict[str, Any]],
        *,
        reply_to_message_id: int | None = None,
        forward_origin: dict[str, Any] | None = None,
    ) -> Message:
        """The user's message lands in their private chat and is queued as an update."""
        message = self._store_message(
            self.chats[user.id],
            user,
            text,
            entities,
            reply_to_message_id=reply_to_message_id,
            forward_origin=forward_origin,
        )
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
