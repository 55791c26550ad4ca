"""One warning per outage and one line when it clears, instead of a traceback per retry.

While PostgreSQL, Telegram or the planning service is away, every activity attempt that
needs it fails and Temporal retries it: the SDK logs each failure with a full traceback
(a 30-s database outage wrote 730 of them). `OutageInterceptor` counts those failures
per dependency and logs one warning when the first one happens, a reminder with the
count every `remind_every` seconds while it lasts, and one line with the count and the
duration when an activity that needs the dependency succeeds again. `QuietOutages`, a
logging filter on the SDK's activity logger (and asyncpg's pool logger), drops the
per-retry tracebacks of those failures. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger("leadpilot.outages")


class Dependency(StrEnum):
    POSTGRES = "PostgreSQL"
    TELEGRAM = "Telegram"
    PLANNER = "the planning service"


# Which dependencies an activity's success proves to be back.
ACTIVITY_NEEDS: dict[str, frozenset[Dependency]] = {
    "send_reminder": frozenset({Dependency.POSTGRES, Dependency.TELEGRAM}),
    "send_notice": frozenset({Dependency.POSTGRES, Dependency.TELEGRAM}),
    "sync_plan": frozenset({Dependency.POSTGRES}),
    "generate_plan": frozenset({Dependency.POSTGRES, Dependency.PLANNER}),
}

_PG_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Shutting down, starting up, crashed: the server, not the query.
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _raised_in_asyncpg(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None:
        if "/asyncpg/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _telegram_unavailable(err: BaseException) -> bool:
    # aiogram is not imported here: the worker loads it after it is already polling.
    aiogram = sys.modules.get("aiogram.exceptions")
    return aiogram is not None and isinstance(
        err, aiogram.TelegramNetworkError | aiogram.TelegramServerError
    )


def classify(err: BaseException) -> Dependency | None:
    """The unavailable dependency an activity failure is due to, or None (not an outage)."""
    for e in _chain(err):
        if isinstance(e, ApplicationError) and e.type == "PlannerUnavailable":
            return Dependency.PLANNER
        if _telegram_unavailable(e):
            return Dependency.TELEGRAM
        if isinstance(e, _PG_ERRORS) and not isinstance(e, asyncpg.QueryCanceledError):
            return Dependency.POSTGRES
        # A pooled connection the server dropped mid-operation ("cannot switch to state
        # …; another operation is in progress"): seen only around outages.
        if isinstance(e, asyncpg.InternalClientError) and "another operation" in str(e):
            return Dependency.POSTGRES
        if isinstance(e, OSError | TimeoutError) and _raised_in_asyncpg(e):
            return Dependency.POSTGRES
    return None


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


@dataclass
class _Outage:
    since: float
    failures: int
    last_reminded: float


class OutageTracker:
    """Per-process outage state; thread-unsafe by design (one event loop)."""

    def __init__(self, remind_every: float = 60.0) -> None:
        self.remind_every = remind_every
        self._open: dict[Dependency, _Outage] = {}

    def is_down(self, dep: Dependency) -> bool:
        return dep in self._open

    def failed(self, dep: Dependency, err: BaseException, activity_type: str) -> None:
        now = time.monotonic()
        outage = self._open.get(dep)
        if outage is None:
            self._open[dep] = _Outage(now, 1, now)
            log.warning(
                "%s unavailable (%s, in %s); retrying, further failures are counted, not logged",
                dep.value,
                _describe(err),
                activity_type,
            )
            return
        outage.failures += 1
        if now - outage.last_reminded >= self.remind_every:
            outage.last_reminded = now
            log.warning(
                "%s still unavailable after %.0f s: %d failed attempts so far",
                dep.value,
                now - outage.since,
                outage.failures,
            )

    def succeeded(self, deps: frozenset[Dependency]) -> None:
        for dep in deps:
            outage = self._open.pop(dep, None)
            if outage is not None:
                log.warning(
                    "%s is back after %.1f s; %d failed attempts during the outage were retried",
                    dep.value,
                    time.monotonic() - outage.since,
                    outage.failures,
                )


class OutageInterceptor(Interceptor):
    """Worker interceptor: feeds every activity's outcome to an OutageTracker."""

    def __init__(self, tracker: OutageTracker) -> None:
        self.tracker = tracker

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingInbound(next, self.tracker)


class _CountingInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracker: OutageTracker) -> None:
        super().__init__(next)
        self._tracker = tracker

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        try:
            result = await super().execute_activity(input)
        except BaseException as err:
            dep = classify(err)
            if dep is not None:
                self._tracker.failed(dep, err, name)
            raise
        self._tracker.succeeded(ACTIVITY_NEEDS.get(name, frozenset()))
        return result


class QuietOutages(logging.Filter):
    """Drops the SDK's per-attempt failure traceback when the failure is a counted outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            return classify(record.exc_info[1]) is None
        return True


_FILTER = QuietOutages()


def install_log_filter() -> None:
    """Idempotent: the SDK's activity logger and asyncpg's pool logger (which retries its
    connection floor with a traceback each time) get the filter once per process."""
    for name in ("temporalio.activity", "asyncpg.pool"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
