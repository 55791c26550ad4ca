"""What happened, for assertions and the web chat: recorded calls, messages, events, waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulators.telegram.model import (
    POLLING_METHODS,
    Call,
    CallbackAnswer,
    CallbackQuery,
    ChatEvent,
    Message,
)
from emulators.telegram.state import EmulatorCore


class QueriesMixin(EmulatorCore):
    """Read-only views of the state, and waits on it that never poll."""

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot."""
        return list(self._updates)

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
                else include_polling or call.method.lower() not in POLLING_METHODS
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

    def last_sent(self, chat_id: int) -> Message:
        messages = self.sent(chat_id)
        if not messages:
            raise LookupError(f"the bot sent nothing to chat {chat_id}")
        return messages[-1]

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
