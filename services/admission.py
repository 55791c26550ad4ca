"""How many plan updates one process lets into Temporal at once, learnt from their latency.

Every owner action (Done, Pause, …) is a workflow update: a workflow task on the same
workers that wake plans for their reminders. Let in faster than the workers finish them,
updates queue at the server ahead of the reminders' tasks, and a burst of taps makes
every reminder late (the benchmark's 50 taps/s on 2 cores: seconds to a minute) and
sticky tasks time out. So the number in flight is bounded by a limit that follows the
updates' own round trip (AIMD, as TCP does with its window): while they come back within
`target`, the limit grows by one per limit's worth of updates; when one comes back
slower, the workers are queueing, and the limit shrinks by a quarter (once per round
trip: updates sent before the last cut do not cut it again). Each process adapts on its
own; AIMD converges to a fair share across replicas without talking to them.

A tap beyond the limit waits its turn (first come, first served) for at most `max_wait`,
then `Busy`: the owner hears "nothing changed, tap again" instead of a change that lands
a minute later. Background work the owner already asked for waits as long as it takes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


class Busy(Exception):
    """No room for the update within `max_wait`: it was not sent."""


@dataclass
class AdmissionStats:
    """What the limiter did: taps refused, and cuts of the limit."""

    refused: int = 0
    cuts: int = 0


class UpdateAdmission:
    """The limit starts at 8 (of `floor`…`ceiling`) and moves with every update."""

    def __init__(
        self,
        target: float = 0.5,
        max_wait: float = 1.0,
        floor: int = 2,
        ceiling: int = 64,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.target = target
        self.max_wait = max_wait
        self.floor = floor
        self.ceiling = ceiling
        self.limit = float(min(ceiling, max(floor, 8)))
        self.in_flight = 0
        self.stats = AdmissionStats()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_cut = -float("inf")
        self._clock = clock or time.monotonic

    @asynccontextmanager
    async def slot(self, patient: bool = False) -> AsyncIterator[None]:
        """Hold one place among the updates in flight; its time adjusts the limit.
        `patient`: wait as long as it takes (a change the owner made already, carried out
        in the background, must not be dropped)."""
        await self._acquire(None if patient else self.max_wait)
        began = self._clock()
        try:
            yield
        finally:
            self._release(began)

    async def _acquire(self, max_wait: float | None) -> None:
        if not self._waiters and self.in_flight < int(self.limit):
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), max_wait)
        except TimeoutError:
            if waiter.done():  # admitted in the same instant: keep the place
                return
            waiter.cancel()
            self._waiters.remove(waiter)
            self.stats.refused += 1
            raise Busy(
                f"{self.in_flight} plan updates in flight (limit {int(self.limit)})"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(None)  # admitted, then cancelled: give the place back
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            raise

    def _release(self, began: float | None) -> None:
        self.in_flight -= 1
        if began is not None:
            self._adjust(began)
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _adjust(self, began: float) -> None:
        now = self._clock()
        if now - began <= self.target:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        elif began >= self._last_cut and self.limit > self.floor:
            # (sent before the last cut: that cut answered it already)
            self.limit = max(float(self.floor), self.limit * 0.75)
            self._last_cut = now
            self.stats.cuts += 1
