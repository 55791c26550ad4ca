"""Scripted failures: errors (429/5xx/...), dropped connections, delays, and a flood limit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from emulators.telegram.model import POLLING_METHODS
from emulators.telegram.state import EmulatorCore
from emulators.telegram.wire import ApiError

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
            if method in POLLING_METHODS:
                return False
        elif self.method != method:
            return False
        return self.chat_id is None or params.get("chat_id") == self.chat_id

    def error(self) -> ApiError:
        """The error reply this fault stands for (``kind`` "error")."""
        return ApiError(self.status, self.description, self.retry_after)


class FaultsMixin(EmulatorCore):
    """What tests script to go wrong; the HTTP layer takes a matching fault per call."""

    def _reset_state(self) -> None:
        super()._reset_state()
        self.faults: list[Fault] = []
        self._flood_global: float | None = None
        self._flood_per_chat: float | None = None
        self._flood_retry_after = 1
        self._flood_log: deque[tuple[float, int]] = deque()

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
        return self._add_fault(
            Fault(
                method.lower(),
                "error",
                count,
                chat_id,
                status=status,
                description=description,
                retry_after=retry_after,
            )
        )

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
        return self._add_fault(
            Fault(method.lower(), "drop", count, chat_id, after_processing=after_processing)
        )

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
        return self._add_fault(
            Fault(
                method.lower(),
                "delay",
                count,
                chat_id,
                delay=seconds,
                after_processing=after_processing,
            )
        )

    def _add_fault(self, fault: Fault) -> Fault:
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
