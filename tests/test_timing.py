"""Pure rules, no servers: due-time fitting (window edges, weekends, DST) and plan input checks."""

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from workflows.models import Schedule
from workflows.timing import describe_delay, fit_to_window

BERLIN = Schedule(timezone="Europe/Berlin")  # 09:00–20:00, workdays only


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "schedule", "expected"),
    [
        # inside the window: unchanged (Wed 2026-12-02 10:00 CET)
        (utc(2026, 12, 2, 9), BERLIN, utc(2026, 12, 2, 9)),
        # before the window: same day at 09:00 local
        (utc(2026, 12, 2, 5), BERLIN, utc(2026, 12, 2, 8)),
        # exactly at window end: next day 09:00
        (utc(2026, 12, 2, 19), BERLIN, utc(2026, 12, 3, 8)),
        # one second before window end: unchanged
        (utc(2026, 12, 2, 18, 59, 59), BERLIN, utc(2026, 12, 2, 18, 59, 59)),
        # Friday evening → Monday 09:00
        (utc(2026, 12, 4, 20), BERLIN, utc(2026, 12, 7, 8)),
        # Saturday noon → Monday 09:00
        (utc(2026, 12, 5, 11), BERLIN, utc(2026, 12, 7, 8)),
        # Saturday allowed when workdays_only is off
        (
            utc(2026, 12, 5, 11),
            Schedule(timezone="Europe/Berlin", workdays_only=False),
            utc(2026, 12, 5, 11),
        ),
        # spring forward: Fri 2026-03-27 21:00 CET → Mon 2026-03-30 09:00 CEST (UTC+2)
        (utc(2026, 3, 27, 20), BERLIN, utc(2026, 3, 30, 7)),
        # fall back: Sat 2026-10-24 22:00 CEST → Sun 2026-10-25 09:00 CET (UTC+1)
        (
            utc(2026, 10, 24, 20),
            Schedule(timezone="Europe/Berlin", workdays_only=False),
            utc(2026, 10, 25, 8),
        ),
        # New York, custom window 08:30–17:00, after hours on Thursday → Fri 08:30 EST
        (
            utc(2026, 12, 3, 23),
            Schedule(timezone="America/New_York", window_start=time(8, 30), window_end=time(17)),
            utc(2026, 12, 4, 13, 30),
        ),
        # Auckland is a day ahead: Sunday 2026-12-06 00:00Z is Sunday 13:00 local → Mon 09:00 NZDT
        (utc(2026, 12, 6, 0), Schedule(timezone="Pacific/Auckland"), utc(2026, 12, 6, 20)),
    ],
)
def test_fit_to_window(moment: datetime, schedule: Schedule, expected: datetime) -> None:
    assert fit_to_window(moment, schedule) == expected


def test_same_local_hour_across_dst() -> None:
    """A reminder 'every day at 09:00' stays at 09:00 local on both sides of the change."""
    schedule = Schedule(timezone="Europe/Berlin", workdays_only=False)
    before = fit_to_window(utc(2026, 3, 28, 4), schedule)  # Sat, CET
    after = fit_to_window(before + timedelta(days=1) - timedelta(hours=3), schedule)  # Sun, CEST
    assert before == utc(2026, 3, 28, 8)
    assert after == utc(2026, 3, 29, 7)


def test_compressed_day_ignores_window() -> None:
    saturday_night = utc(2026, 12, 5, 23)
    assert fit_to_window(saturday_night, BERLIN, day_seconds=10) == saturday_night


def test_schedule_validation() -> None:
    with pytest.raises(ValidationError, match="unknown timezone"):
        Schedule(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="send window"):
        Schedule(window_start=time(20), window_end=time(9))


def test_describe_delay() -> None:
    assert describe_delay(timedelta(days=2), 86400) == "2 days"
    assert describe_delay(timedelta(hours=5), 86400) == "5 h"
    assert describe_delay(timedelta(seconds=20), 10) == "2 days"


def test_plan_input_rejects_a_plan_it_cannot_run() -> None:
    from workflows.models import PlanInput, PlanStep

    def step(i: int, delay: int) -> PlanStep:
        return PlanStep(step_id=i, action_type="email", description="x", delay_days=delay)

    with pytest.raises(ValidationError, match="must not decrease"):
        PlanInput(lead_id=1, telegram_id=1, steps=[step(1, 5), step(2, 1)])
    with pytest.raises(ValidationError, match="unique"):
        PlanInput(lead_id=1, telegram_id=1, steps=[step(1, 0), step(1, 1)])
    with pytest.raises(ValidationError, match="1–8 steps"):
        PlanInput(lead_id=1, telegram_id=1, steps=[step(i, i) for i in range(1, 10)])
    assert PlanInput(lead_id=1, telegram_id=1, steps=None).steps is None
