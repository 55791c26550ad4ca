"""Due-time arithmetic: pure functions of their arguments, so the workflow stays deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from workflows.models import Schedule

REAL_DAY_SECONDS = 86400


def days(n: float, day_seconds: int) -> timedelta:
    """n plan days; a plan day is shorter than 24 h only in demos and tests."""
    return timedelta(seconds=n * day_seconds)


def hours(n: float, day_seconds: int) -> timedelta:
    return days(n / 24, day_seconds)


def fit_to_window(
    moment: datetime, schedule: Schedule, day_seconds: int = REAL_DAY_SECONDS
) -> datetime:
    """The first instant at or after `moment` inside the owner's send window.

    Works on local wall-clock dates, so DST changes keep reminders at the same local
    hour. With a compressed demo day (day_seconds < 86400) a wall-clock window means
    nothing, so the moment is returned unchanged.
    """
    if day_seconds != REAL_DAY_SECONDS:
        return moment
    tz = ZoneInfo(schedule.timezone)
    local = moment.astimezone(tz)
    day = local.date()
    if local.time() >= schedule.window_end:
        day += timedelta(days=1)
        candidate = None
    elif local.time() < schedule.window_start:
        candidate = None
    else:
        candidate = local
    while schedule.workdays_only and day.weekday() >= 5:
        day += timedelta(days=1)
        candidate = None
    if candidate is None:
        # Round trip through UTC normalises a start that falls into a DST gap.
        start = datetime.combine(day, schedule.window_start, tzinfo=tz)
        candidate = start.astimezone(UTC).astimezone(tz)
    return candidate.astimezone(UTC)


def describe_delay(delta: timedelta, day_seconds: int) -> str:
    """'2 days', '5 h', '30 min' in plan time, for timer summaries and the bot."""
    plan_hours = delta.total_seconds() / day_seconds * 24
    if plan_hours >= 36:
        n = round(plan_hours / 24)
        return f"{n} day" + ("s" if n != 1 else "")
    if plan_hours >= 1:
        return f"{round(plan_hours)} h"
    return f"{max(1, round(plan_hours * 60))} min"
