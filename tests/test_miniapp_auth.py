"""Mini App sign-in: initData as Telegram signs it, the session token, every refusal a 401.

The initData here is signed by the emulator's own implementation of Telegram's side
(emulators/webchat.sign_web_app_data), written separately from the validator.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from emulators.webchat import sign_web_app_data
from services.plans import PlanService
from settings import Settings
from storage.users import UserRepository
from telegram_ui.session import make_bot
from webapp.auth import (
    AuthError,
    issue_token,
    session_secret,
    validate_init_data,
    verify_token,
)
from webapp.server import MiniApp, build_app

TOKEN = "123456:MINIAPP-TEST"
OTHER_BOT = "654321:SOMEONE-ELSE"
ALICE = {"id": 7001, "first_name": "Alice", "language_code": "en"}
DAY = 86400


def signed(user: dict[str, Any] | None = ALICE, *, token: str = TOKEN, age: float = 0) -> str:
    data = sign_web_app_data(token, user or {}, auth_date=int(time.time() - age))
    if user is None:  # re-sign without the user field
        fields = dict(parse_qsl(data))
        fields.pop("user"), fields.pop("hash")
        return _resign(fields, token)
    return data


def _resign(fields: dict[str, str], token: str) -> str:
    import hashlib
    import hmac

    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    key = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    return urlencode({**fields, "hash": hmac.new(key, check.encode(), hashlib.sha256).hexdigest()})


# ---- the validator itself


def test_valid_init_data_gives_the_user() -> None:
    user = validate_init_data(signed(), TOKEN, DAY)
    assert (user.id, user.first_name) == (7001, "Alice")


@pytest.mark.parametrize(
    ("init_data", "why"),
    [
        (signed(token=OTHER_BOT), "signature"),
        (signed().replace("7001", "7002"), "signature"),  # tampered user id
        (signed() + "&extra=1", "signature"),  # a field added after signing
        (signed(age=DAY + 5), "too old"),
        (signed(age=-3600), "future"),
        (signed(None), "no user"),
        (_resign({"auth_date": str(int(time.time())), "user": "{not json"}, TOKEN), "no user"),
        (_resign({"auth_date": str(int(time.time())), "user": '{"id": "7"}'}, TOKEN), "user id"),
        (_resign({"auth_date": "soon", "user": json.dumps(ALICE)}, TOKEN), "auth_date"),
        (_resign({"user": json.dumps(ALICE)}, TOKEN), "auth_date"),
        (signed().split("&hash=")[0], "signature"),  # no hash at all
        ("", "missing"),
        ("garbage", "malformed"),
        (signed() + "&auth_date=1", "repeats"),
        ("x" * 9000, "too long"),
    ],
)
def test_bad_init_data_is_refused(init_data: str, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        validate_init_data(init_data, TOKEN, DAY)


@pytest.mark.parametrize(
    "init_data",
    [
        signed(),
        signed(token=OTHER_BOT),
        signed().replace("7001", "7002"),
        # A field Telegram added later (Ed25519 `signature` for third parties) is signed too.
        _resign(
            {"auth_date": str(int(time.time())), "user": json.dumps(ALICE), "signature": "x"}, TOKEN
        ),
    ],
    ids=["valid", "other-bot", "tampered", "extra-field"],
)
def test_agrees_with_aiogram_on_the_signature(init_data: str) -> None:
    """A second, independent implementation of Telegram's check (aiogram's) agrees."""
    from aiogram.utils.web_app import check_webapp_signature

    try:
        validate_init_data(init_data, TOKEN, DAY)
        ours = True
    except AuthError:
        ours = False
    assert ours is check_webapp_signature(TOKEN, init_data)


def test_freshness_is_configurable() -> None:
    assert validate_init_data(signed(age=DAY - 60), TOKEN, DAY).id == 7001
    with pytest.raises(AuthError, match="too old"):
        validate_init_data(signed(age=120), TOKEN, 60)


def test_session_token_round_trip_and_refusals() -> None:
    secret = session_secret(None, TOKEN)
    token = issue_token(7001, secret, 3600)
    assert verify_token(token, secret) == 7001
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    assert claims["role"] == "authenticated" and claims["telegram_id"] == "7001"

    expired = issue_token(7001, secret, 3600, now=time.time() - 3601)
    # Someone else's id in the claims, with the original signature.
    forged_body = (
        base64.urlsafe_b64encode(json.dumps({**claims, "telegram_id": "7002"}).encode())
        .rstrip(b"=")
        .decode()
    )
    cases = {
        "expired": expired,
        "signature": issue_token(7001, session_secret("another secret", TOKEN), 3600),
        "malformed": "a.b",
        "signature ": f"{head}.{forged_body}.{sig}",
    }
    for why, bad in cases.items():
        with pytest.raises(AuthError, match=why.strip()):
            verify_token(bad, secret)
    # alg "none" with an empty signature is not a way in.
    none_head = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"
    with pytest.raises(AuthError):
        verify_token(f"{none_head}.{body}.", secret)


# ---- over HTTP


@pytest.fixture
async def client(pool: asyncpg.Pool, db_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The Mini App server on the test database; sign-in never reaches Temporal."""
    settings = Settings(
        database_url=db_url, telegram_bot_token=TOKEN, miniapp_auth_max_age_seconds=DAY
    )
    bot = make_bot(TOKEN, "http://127.0.0.1:9")
    plans = PlanService(cast(Any, None), pool, settings)  # no plan is touched here
    async with TestClient(TestServer(build_app(MiniApp(pool, plans, bot, settings)))) as c:
        yield c
    await bot.session.close()


async def test_sign_in_registers_the_user_and_opens_the_api(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    resp = await client.post("/app/api/session", json={"init_data": signed()})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"] == {"id": 7001, "first_name": "Alice", "timezone": "UTC"}
    user = await UserRepository(pool).get(7001)
    assert user is not None and user.first_name == "Alice"
    resp = await client.get(
        "/app/api/settings", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert resp.status == 200
    assert (await resp.json())["settings"]["telegram_id"] == 7001


@pytest.mark.parametrize(
    "init_data",
    [
        signed(token=OTHER_BOT),
        signed().replace("Alice", "Mallory"),
        signed(age=DAY + 60),
        signed(None),
        "",
        None,
        12,
    ],
    ids=["other-bot", "wrong-hash", "expired", "no-user", "empty", "missing", "not-a-string"],
)
async def test_refused_sign_in_is_401_and_registers_nobody(
    client: TestClient[Any, Any], pool: asyncpg.Pool, init_data: Any
) -> None:
    body = {} if init_data is None else {"init_data": init_data}
    resp = await client.post("/app/api/session", json=body)
    assert resp.status == 401
    assert (await resp.json())["error"]
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer ",
        "Basic abc",
        "Bearer not.a.token",
        "Bearer " + issue_token(7001, session_secret(None, TOKEN), 3600, now=time.time() - 7200),
        "Bearer " + issue_token(7001, session_secret(None, OTHER_BOT), 3600),
    ],
    ids=["none", "empty", "basic", "garbage", "expired-replay", "other-secret"],
)
async def test_api_without_a_valid_session_is_401(
    client: TestClient[Any, Any], header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/app/api/today", "/app/api/pipeline", "/app/api/settings", "/app/api/leads/1"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401, path
    resp = await client.post(
        "/app/api/leads/1/step",
        json={"step_id": 1, "plan_version": 1, "action": "done"},
        headers=headers,
    )
    assert resp.status == 401


async def test_the_page_loads_the_configured_telegram_script(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/app")
    assert resp.status == 200
    page = await resp.text()
    assert '<script src="https://telegram.org/js/telegram-web-app.js"></script>' in page
    assert (await client.get("/app/static/app.js")).status == 200


# ---- the dev web chat plays Telegram's side


async def test_web_chat_signs_launch_data_for_its_user_and_shows_the_menu_app() -> None:
    import aiohttp

    from emulators.telegram import TelegramEmulator
    from emulators.webchat import mount_webchat

    emulator = TelegramEmulator(auto_create_chats=True)
    mount_webchat(emulator, user_id=4321, first_name="Dev")
    await emulator.start()
    bot = make_bot(emulator.token, emulator.base_url)
    try:
        async with aiohttp.ClientSession(emulator.base_url) as http:
            async with http.get("/chat/api/history") as resp:
                assert (await resp.json())["menu_app"] is None
            from aiogram.types import MenuButtonWebApp, WebAppInfo

            await bot.set_chat_menu_button(
                menu_button=MenuButtonWebApp(
                    text="📋 Pipeline", web_app=WebAppInfo(url="http://127.0.0.1:8082/app")
                )
            )
            async with http.get("/chat/api/history") as resp:
                menu = (await resp.json())["menu_app"]
            assert menu == {"text": "📋 Pipeline", "url": "http://127.0.0.1:8082/app"}

            async with http.post("/chat/api/webapp", json={"url": menu["url"]}) as resp:
                assert resp.status == 200
                init_data = (await resp.json())["init_data"]
            user = validate_init_data(init_data, emulator.token, DAY)
            assert (user.id, user.first_name) == (4321, "Dev")
            with pytest.raises(AuthError):  # signed with this bot's token, no other
                validate_init_data(init_data, OTHER_BOT, DAY)

            for bad in ({"url": "javascript:alert(1)"}, {"url": 5}, {}):
                async with http.post("/chat/api/webapp", json=bad) as resp:
                    assert resp.status == 400
            async with http.get("/chat/telegram-web-app.js") as resp:
                assert resp.status == 200
                assert "Telegram" in await resp.text()
    finally:
        await bot.session.close()
        await emulator.stop()
