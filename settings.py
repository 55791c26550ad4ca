"""One place for configuration: environment variables and an optional `.env`."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"

    telegram_bot_token: str
    # A local Bot API server or the project's emulator; None means api.telegram.org.
    telegram_api_base: str | None = None
    # Server-side limit for the telegram task queue, across all workers (Telegram allows ~30/s).
    telegram_sends_per_second: float = Field(default=25.0, gt=0)
    # Seconds; below the send activity's 30-s start-to-close (the lease relies on it).
    telegram_request_timeout: int = Field(default=15, ge=1, le=20)
    # Minimum seconds between two messages to one chat, across all workers (Telegram ~1/s).
    chat_spacing_seconds: float = Field(default=1.1, ge=0)

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"

    # 86400 in production; smaller only for demos and tests.
    day_seconds: int = Field(default=86400, ge=1)
    nudge_after_hours: list[float] = [24.0, 72.0]
    max_reminders: int = Field(default=3, ge=1)
    auto_snooze_days: int = Field(default=7, ge=1)

    metrics_port: int | None = None

    bot_mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8081


def load_settings(**overrides: object) -> Settings:
    """Build settings or stop the process with one line naming what is wrong."""
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
