"""The bound on plan updates in flight (services/admission.py): first come, first served;
slow round trips shrink it, quick ones grow it back; a tap that finds no room in time is
refused before anything is sent, and a cancelled wait gives its place back."""

from __future__ import annotations

import asyncio

import pytest

from services.admission import Busy, UpdateAdmission


class Clock:
    """The limiter's clock, moved by hand: round trips last exactly what a test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _hold(admission: UpdateAdmission, order: list[str], name: str, go: asyncio.Event) -> None:
    async with admission.slot():
        order.append(name)
        await go.wait()


async def test_updates_beyond_the_limit_wait_their_turn_in_order() -> None:
    admission = UpdateAdmission(target=1.0, max_wait=5.0, floor=1, ceiling=2)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in "abcd"}
    tasks = [asyncio.create_task(_hold(admission, order, n, gates[n])) for n in "abcd"]
    await asyncio.sleep(0.05)
    assert order == ["a", "b"] and admission.in_flight == 2  # c and d wait
    gates["b"].set()
    await asyncio.sleep(0.05)
    assert order == ["a", "b", "c"]
    gates["a"].set()
    await asyncio.sleep(0.05)
    assert order == ["a", "b", "c", "d"]
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*tasks)
    assert admission.in_flight == 0


async def test_slow_round_trips_cut_the_limit_and_quick_ones_grow_it_back() -> None:
    clock = Clock()
    admission = UpdateAdmission(target=0.5, floor=2, ceiling=16, clock=clock)
    admission.limit = 16

    async def update(seconds: float) -> None:
        async with admission.slot():
            clock.now += seconds

    slow = [admission.slot() for _ in range(3)]
    for held in slow:  # three updates in flight together; the workers are queueing
        await held.__aenter__()
    clock.now += 2.0
    for held in slow:
        await held.__aexit__(None, None, None)
    assert admission.limit == 12  # one slow round trip is one cut, not three
    for _ in range(20):
        await update(2.0)
    assert admission.limit == 2  # never below the floor
    for _ in range(200):
        await update(0.05)
    assert 10 < admission.limit <= 16  # additive: about one per limit's worth of updates
    for _ in range(2000):
        await update(0.05)
    assert admission.limit == 16  # never above the ceiling
    assert admission.stats.cuts == 8  # 16 → 12 → 9 → 6.75 → … → 2.14 → 2


async def _taken(max_wait: float) -> tuple[UpdateAdmission, asyncio.Event, asyncio.Task[None]]:
    """A limit of one, held by an update that runs until the event is set."""
    admission = UpdateAdmission(target=1.0, max_wait=max_wait, floor=1, ceiling=1)
    go = asyncio.Event()
    first = asyncio.create_task(_hold(admission, [], "first", go))
    await asyncio.sleep(0.01)
    return admission, go, first


async def test_a_tap_that_finds_no_room_in_time_is_refused_and_not_run() -> None:
    admission, go, first = await _taken(max_wait=0.2)
    ran = False
    with pytest.raises(Busy):
        async with admission.slot():
            ran = True
    assert not ran and admission.stats.refused == 1
    go.set()
    await first
    async with admission.slot():  # room again
        ran = True
    assert ran and admission.in_flight == 0


async def test_a_cancelled_wait_gives_its_place_back() -> None:
    admission, go, first = await _taken(max_wait=5.0)
    waiting = asyncio.create_task(_hold(admission, [], "second", asyncio.Event()))
    await asyncio.sleep(0.01)
    waiting.cancel()  # the bot shuts down while a tap waits
    with pytest.raises(asyncio.CancelledError):
        await waiting
    go.set()
    await first
    assert admission.in_flight == 0
    order: list[str] = []
    done = asyncio.Event()
    done.set()
    await asyncio.wait_for(_hold(admission, order, "third", done), 1)
    assert order == ["third"]
