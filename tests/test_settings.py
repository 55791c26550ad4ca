"""Settings keep secrets out of reprs and logs, and `.env.example` documents every one."""

from __future__ import annotations

import json
import logging
import re
import zoneinfo
from pathlib import Path

import pytest

from settings import Settings, load_settings, revealed

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:AAH-very-secret-bot-token"
KEY = "sk-very-secret-openai-key"
DSN = "postgresql://leadpilot:hunter2-db-password@db.internal:5432/leadpilot"


def secret_settings() -> Settings:
    return Settings(
        database_url=DSN,
        telegram_bot_token=TOKEN,
        openai_api_key=KEY,
        webhook_secret="webhook-shared-secret",
        miniapp_session_secret="miniapp-hs256-key",
        _env_file=None,  # type: ignore[call-arg]
    )


SECRETS = (TOKEN, KEY, "hunter2-db-password", "webhook-shared-secret", "miniapp-hs256-key")


def test_repr_str_and_dump_do_not_reveal_secrets() -> None:
    settings = secret_settings()
    for shown in (repr(settings), str(settings), str(settings.model_dump()), f"{settings}"):
        for secret in SECRETS:
            assert secret not in shown
    assert "**********" in repr(settings)


def test_a_logged_settings_object_does_not_reveal_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("leadpilot.test").info("starting with %s", secret_settings())
    for secret in SECRETS:
        assert secret not in caplog.text


def test_code_that_needs_the_value_gets_it() -> None:
    settings = secret_settings()
    assert settings.telegram_bot_token.get_secret_value() == TOKEN
    assert settings.database_url.get_secret_value() == DSN
    assert revealed(settings.openai_api_key) == KEY
    assert revealed(Settings(database_url=DSN, telegram_bot_token=TOKEN).webhook_secret) is None


def test_every_setting_is_in_env_example_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    lines = [line.lstrip("# ").strip() for line in text.splitlines()]
    assigned = {
        m.group(1): m.group(2) for line in lines if (m := re.match(r"([A-Z_]+)=(.*)$", line))
    }
    for name, field in Settings.model_fields.items():
        env = name.upper()
        assert env in assigned, f"{env} missing from .env.example"
        if not field.is_required() and field.default is not None:
            shown, default = assigned[env], field.default
            if isinstance(default, list):
                assert json.loads(shown) == default, env
            elif isinstance(default, int | float):
                assert float(shown) == default, env
            else:
                assert shown == str(default), env
    # Nothing stale: every assignment in the file is a real setting.
    assert set(assigned) <= {n.upper() for n in Settings.model_fields}


def test_the_zone_database_is_the_bundled_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """After load_settings, zone rules come from the tzdata package, whatever the system has."""
    monkeypatch.setenv("DATABASE_URL", DSN)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    before = zoneinfo.TZPATH
    try:
        load_settings()
        assert zoneinfo.TZPATH == ()
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
        assert berlin.key == "Europe/Berlin"  # found without any system path
    finally:
        zoneinfo.reset_tzpath(to=before)
        zoneinfo.ZoneInfo.clear_cache()
