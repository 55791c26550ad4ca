"""One place for configuration: environment variables and an optional `.env`.

Tokens, keys and the database URL (it may carry a password) are `SecretStr`: the repr of
the settings, a traceback's locals or a stray log line show `**********`; code that
needs the value calls `.get_secret_value()` (or `revealed()` for an optional one).
Every setting, its default and a one-line comment: `.env.example`.
"""

from __future__ import annotations

import sys
import zoneinfo
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: SecretStr
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"

    telegram_bot_token: SecretStr
    # A local Bot API server or the project's emulator; None means api.telegram.org.
    telegram_api_base: str | None = None
    # Server-side limit for the telegram task queue, across all workers (Telegram allows ~30/s).
    telegram_sends_per_second: float = Field(default=25.0, gt=0)
    # Seconds; below the send activity's 30-s start-to-close (the lease relies on it).
    telegram_request_timeout: int = Field(default=15, ge=1, le=20)
    # Minimum seconds between two messages to one chat, across all workers (Telegram ~1/s).
    chat_spacing_seconds: float = Field(default=1.2, ge=0)
    # Plans started from now wake this long before a reminder is due and the send waits
    # for the due time itself, so queues in front of the send don't make it late
    # (BENCHMARKS.md); 0 fires at the due time. At most 5 (the send's time budget).
    send_lead_seconds: float = Field(default=2.0, ge=0, le=5)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    # A draft's overall deadline across retries, and each request's share of it (seconds).
    planner_deadline_seconds: float = Field(default=60.0, gt=0)
    planner_request_timeout_seconds: float = Field(default=25.0, gt=0)

    # 86400 in production; smaller only for demos and tests.
    day_seconds: int = Field(default=86400, ge=1)
    nudge_after_hours: list[float] = [24.0, 72.0]
    max_reminders: int = Field(default=3, ge=1)
    auto_snooze_days: int = Field(default=7, ge=1)

    metrics_port: int | None = None
    # Task queues this worker process polls; "engagement" alone starts without aiogram.
    worker_queues: list[Literal["engagement", "telegram"]] = Field(
        default=["engagement", "telegram"], min_length=1
    )
    # Plans kept in the worker's memory between tasks (sticky cache); 0 replays every
    # task from history (slower, used by the model-based tests to replay all the time).
    max_cached_workflows: int = Field(default=1000, ge=0)
    # Worker concurrency (measured in BENCHMARKS.md): workflow tasks and activities one
    # process takes at once, its pollers per queue, and its PostgreSQL connections. The
    # SDK's 100 let a worker under a backlog take more than it could finish (tasks > 5 s,
    # sends timed out and repeated); 20 keeps it saturated without that.
    max_concurrent_workflow_tasks: int = Field(default=20, ge=2)
    max_concurrent_activities: int = Field(default=20, ge=1)
    max_concurrent_local_activities: int = Field(default=100, ge=1)
    # Sends one process runs at once: they mostly wait (for their due time, their chat's
    # slot, Telegram's answer), and the server's rate limit bounds how many start per
    # second, so this is not a CPU bound; sends waiting out their lead need room.
    max_concurrent_sends: int = Field(default=100, ge=1)
    # Seconds between sweeps of reminder buttons left on answered steps (telegram queue;
    # telegram_ui/stale_buttons.py); 0: none.
    stale_buttons_sweep_seconds: float = Field(default=60.0, ge=0)
    workflow_task_pollers: int = Field(default=5, ge=2)
    activity_task_pollers: int = Field(default=5, ge=1)
    worker_db_pool_size: int = Field(default=10, ge=1)
    # How the worker runs plan code: "full" sandbox (a fresh import per plan loaded,
    # ~45 ms of CPU), "shared" (the workflow module passed through), "off" (worker.py's
    # plan_runner; the tests' replayer keeps the full sandbox).
    workflow_sandbox: Literal["full", "shared", "off"] = "off"

    bot_mode: Literal["polling", "webhook"] = "polling"
    # Chats one bot process handles at once (one update per chat at a time); others wait.
    # A handler holds no connection of its own while it waits on Temporal, so this bounds
    # work in flight, not PostgreSQL connections.
    bot_chats_at_once: int = Field(default=100, ge=1)
    # Plan updates (taps) one process lets into Temporal at once follow their latency:
    # slower than this (seconds), the workers are queueing and fewer are let in, so taps
    # never bury the reminders' workflow tasks (services/admission.py); 0: no bound.
    plan_update_latency_target: float = Field(default=0.5, ge=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8081

    # Mini App (webapp/): its public URL (https for real Telegram; None hides its buttons),
    # where `python -m webapp` listens, and sign-in limits.
    miniapp_url: str | None = None
    miniapp_host: str = "0.0.0.0"
    miniapp_port: int = 8082
    # HS256 key of the session tokens; unset: derived from the bot token.
    miniapp_session_secret: SecretStr | None = None
    miniapp_session_ttl_seconds: int = Field(default=3600, ge=60)
    miniapp_auth_max_age_seconds: int = Field(default=86400, ge=60)
    # Telegram's script; the dev stack serves a local stand-in (no internet needed).
    miniapp_telegram_js: str = "https://telegram.org/js/telegram-web-app.js"

    # Log lines on stderr: readable text, or one JSON object per line (with the workflow
    # id, run id, workflow and activity type of Temporal's loggers); see logging_setup.py.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MiniAppLink(BaseSettings):
    """Only what an "Open pipeline" button needs, for code without the full settings
    (the send activities build reminder keyboards)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    miniapp_url: str | None = None
    telegram_api_base: str | None = None

    @property
    def url(self) -> str | None:
        return usable_miniapp_url(self.miniapp_url, self.telegram_api_base)


def usable_miniapp_url(url: str | None, telegram_api_base: str | None) -> str | None:
    """The URL if Telegram will take it for a web_app button: https, or http when a local
    Bot API server or the emulator (TELEGRAM_API_BASE) is in use."""
    url = (url or "").strip()
    if url.startswith("https://") or (url.startswith("http://") and telegram_api_base):
        return url
    return None


def revealed(secret: SecretStr | None) -> str | None:
    """The value of an optional secret, for the one call that needs it."""
    return None if secret is None else secret.get_secret_value()


def use_bundled_tz_database() -> None:
    """Read zone rules only from the `tzdata` package, never from the system's.

    zoneinfo prefers /usr/share/zoneinfo; two workers with different system databases
    could then compute different due times for the same plan (and a replay could differ
    from its first run). The lock file pins `tzdata`, so every process agrees.
    """
    if zoneinfo.TZPATH:
        zoneinfo.reset_tzpath(to=[])
        zoneinfo.ZoneInfo.clear_cache()


def load_settings(**overrides: object) -> Settings:
    """Build settings or stop the process with one line naming what is wrong.

    Every process starts here, so this is also where the zone database is pinned."""
    use_bundled_tz_database()
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper()
            if err["type"] == "missing":
                problems.append(f"missing required setting {name}")
            else:
                problems.append(f"invalid setting {name}: {err['msg']}")
        sys.exit("leadpilot: " + "; ".join(problems))
