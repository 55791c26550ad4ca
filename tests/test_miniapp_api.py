"""The Mini App's API on the real stack: bot, workers, Temporal dev server, PostgreSQL and
the Telegram emulator. What a user observes: the workflow's state, the mirror rows, the
chat's messages, and what another user can (not) see or change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiogram.types import InlineKeyboardMarkup
from aiohttp.test_utils import TestClient, TestServer
from temporalio.testing import WorkflowEnvironment

from emulators.webchat import sign_web_app_data
from services.plans import PlanService
from settings import usable_miniapp_url
from storage.deliveries import DeliveryLedger, StepRef
from storage.leads import LeadRepository
from storage.models import LeadStatus, ReminderStatus
from storage.reminders import ReminderRepository
from storage.users import UserRepository
from telegram_ui.session import make_bot
from tests.bot_fixtures import BotStack, bot_stack
from tests.rig import ANYTIME, eventually
from webapp import queries
from webapp.db import as_user
from webapp.server import MiniApp, build_app
from workflows.models import PlanStatus, StepStatus

pytestmark = pytest.mark.usefixtures("distinct_lead_ids")  # the dev server is shared

ALICE, BOB = 8101, 8202
TABLES = (
    "lead_registry",
    "scheduled_reminders",
    "lead_activity_log",
    "users",
    "telegram_deliveries",
)


class AppUser:
    """One signed-in Mini App user: initData signed as Telegram does, then the session."""

    def __init__(self, client: TestClient[Any, Any], token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get("/app/api/" + path, headers=self.headers)
        return resp.status, await resp.json()

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post("/app/api/" + path, json=body, headers=self.headers)
        return resp.status, await resp.json()


class MiniAppHarness:
    def __init__(self, stack: BotStack, client: TestClient[Any, Any]) -> None:
        self.stack = stack
        self.client = client

    async def sign_in(self, user_id: int, first_name: str = "Tester") -> AppUser:
        init_data = sign_web_app_data(
            self.stack.settings.telegram_bot_token.get_secret_value(),
            {"id": user_id, "first_name": first_name},
        )
        resp = await self.client.post("/app/api/session", json={"init_data": init_data})
        assert resp.status == 200, await resp.text()
        return AppUser(self.client, (await resp.json())["token"])


@asynccontextmanager
async def miniapp(stack: BotStack) -> AsyncIterator[MiniAppHarness]:
    """The Mini App server as `python -m webapp` builds it, on the stack's pool and client."""
    settings = stack.settings
    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    app = build_app(
        MiniApp(stack.pool, PlanService(stack.client, stack.pool, settings), bot, settings)
    )
    try:
        async with TestClient(TestServer(app)) as client:
            yield MiniAppHarness(stack, client)
    finally:
        await bot.session.close()


@pytest.fixture
async def stack(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> AsyncIterator[BotStack]:
    """A plan day of 60 s: step 1 is due on approval, nothing else happens by itself."""
    async with bot_stack(dev_env, db_url, pool, telegram, day_seconds=60) as s:
        yield s


async def running_plan(stack: BotStack, owner: int, name: str) -> tuple[int, Any]:
    """A lead whose approved plan has reminded step 1 in the owner's chat."""
    lead_id = await stack.rig.new_lead(owner, name)
    mark = stack.telegram.call_count
    await stack.rig.start(lead_id, owner, approved=True, schedule=ANYTIME, day_seconds=60)
    reminder = await stack.telegram.wait_for_message(owner, "Step 1 of 6", timeout=20, since=mark)
    await stack.rig.wait_state(
        stack.handle(lead_id), lambda s: s.steps[0].status == StepStatus.SENT
    )
    return lead_id, reminder


async def test_done_from_the_mini_app_moves_workflow_mirror_and_chat(
    stack: BotStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINIAPP_URL", "http://127.0.0.1:8082/app")
    monkeypatch.setenv("TELEGRAM_API_BASE", stack.telegram.base_url)
    lead_id, reminder = await running_plan(stack, ALICE, "Ada Lovelace")
    # The reminder carries the Mini App button, opening at this lead.
    app_buttons = [b.raw["web_app"]["url"] for b in reminder.buttons if "web_app" in b.raw]
    assert app_buttons == [f"http://127.0.0.1:8082/app?lead={lead_id}"]

    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE, "Alice")
        status, today = await alice.get("today")
        assert status == 200
        [item] = today["items"]
        assert (item["lead_id"], item["step_id"], item["position"], item["total"]) == (
            lead_id,
            1,
            1,
            6,
        )
        assert item["name"] == "Ada Lovelace" and item["draft"] == "Hi!"

        status, body = await alice.post(
            f"leads/{lead_id}/step",
            {"step_id": 1, "plan_version": item["plan_version"], "action": "done"},
        )
        assert (status, body["message"]) == (200, "Marked done ✅")

        state = await stack.state(lead_id)
        assert state.steps[0].status == StepStatus.COMPLETED
        assert state.current_step_id == 2

        async def mirrored() -> bool:
            rows = await ReminderRepository(stack.pool).get_for_lead(lead_id)
            return rows[0].status == ReminderStatus.COMPLETED

        await eventually(mirrored)
        edited = stack.telegram.message(ALICE, reminder.message_id)
        assert "✅ Done." in edited.text and "Next: step 2 of 6" in edited.text
        assert edited.buttons == []

        # The same tap again (a stale Mini App list): the chat's answer, nothing changes.
        status, body = await alice.post(
            f"leads/{lead_id}/step",
            {"step_id": 1, "plan_version": item["plan_version"], "action": "done"},
        )
        assert status == 409 and body["already_handled"] is True
        assert body["error"].startswith("Already handled")
        assert (await stack.state(lead_id)).current_step_id == 2

        # Today no longer lists step 1; the lead detail shows the timeline and the log.
        status, today = await alice.get("today")
        assert [(i["lead_id"], i["step_id"]) for i in today["items"]] in ([], [(lead_id, 2)])
        status, detail = await alice.get(f"leads/{lead_id}")
        assert status == 200
        timeline = detail["lead"]["timeline"]
        assert [s["status"] for s in timeline][:2] == ["completed", "pending"]
        assert timeline[1]["current"] is True
        assert "step_completed" in {a["type"] for a in detail["lead"]["activity"]}


async def test_done_from_the_mini_app_takes_the_buttons_off_older_reminders(
    stack: BotStack,
) -> None:
    """An earlier reminder of the step that kept its keyboard (its clean-up met a Telegram
    error) stops inviting taps once the step is answered in the Mini App, as after a tap."""
    lead_id, reminder = await running_plan(stack, ALICE, "Ada Lovelace")
    settings = stack.settings
    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    try:
        earlier = await bot.send_message(
            ALICE, "Step 1 of 6 (an earlier round)", reply_markup=reminder_keyboard(reminder)
        )
    finally:
        await bot.session.close()
    ledger = DeliveryLedger(stack.pool)
    await ledger.begin("earlier-round", ALICE, lead_id, StepRef(lead_id, 1, 1))
    await ledger.complete("earlier-round", earlier.message_id)
    assert stack.telegram.message(ALICE, earlier.message_id).buttons

    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE, "Alice")
        status, _ = await alice.post(
            f"leads/{lead_id}/step", {"step_id": 1, "plan_version": 1, "action": "done"}
        )
        assert status == 200
    assert stack.telegram.message(ALICE, reminder.message_id).buttons == []
    assert stack.telegram.message(ALICE, earlier.message_id).buttons == []
    assert await ledger.live_buttons(StepRef(lead_id, 1, 1)) == []


def reminder_keyboard(message: Any) -> InlineKeyboardMarkup:
    """The keyboard a message arrived with, as the Bot API takes it."""
    return InlineKeyboardMarkup.model_validate(message.to_api()["reply_markup"])


async def test_another_users_token_finds_nothing_and_changes_nothing(stack: BotStack) -> None:
    lead_a, reminder = await running_plan(stack, ALICE, "Ada Lovelace")
    async with miniapp(stack) as app:
        bob = await app.sign_in(BOB, "Bob")
        before = await stack.state(lead_a)
        version = before.plan_version
        attempts = [
            bob.get(f"leads/{lead_a}"),
            bob.post(
                f"leads/{lead_a}/step", {"step_id": 1, "plan_version": version, "action": "done"}
            ),
            bob.post(
                f"leads/{lead_a}/step", {"step_id": 1, "plan_version": version, "action": "stop"}
            ),
            bob.post(f"leads/{lead_a}/plan", {"action": "pause"}),
            bob.post(f"leads/{lead_a}/plan", {"action": "stop"}),
            bob.post(f"leads/{lead_a}/status", {"status": "closed_lost"}),
        ]
        for attempt in attempts:
            status, body = await attempt
            assert status == 404 and body == {"error": "no such lead"}
        for path in ("today", "pipeline"):
            status, body = await bob.get(path)
            assert status == 200 and not body.get("items") and not body.get("leads")

        # Ids that are not ids: a clear 404/400, never a server error.
        for bad in ("abc", str(2**70), "0", "-5"):
            status, _ = await bob.get(f"leads/{bad}")
            assert status == 404, bad
        alice = await app.sign_in(ALICE)
        status, body = await alice.post(
            f"leads/{lead_a}/step", {"step_id": "x", "plan_version": version, "action": "done"}
        )
        assert status == 400 and "step_id" in body["error"]
        status, body = await alice.post(
            f"leads/{lead_a}/step", {"step_id": 1, "plan_version": version, "action": "explode"}
        )
        assert status == 400

    after = await stack.state(lead_a)
    assert after.status == PlanStatus.ACTIVE and after.current_step_id == 1
    assert after.steps[0].status == before.steps[0].status
    lead = await LeadRepository(stack.pool).get(lead_a)
    assert lead is not None and lead.status == LeadStatus.ANALYZED
    assert stack.telegram.message(ALICE, reminder.message_id).edit_date is None


async def test_rls_holds_with_the_owner_filter_bypassed(stack: BotStack) -> None:
    """The Mini App's own queries, owner filter dropped on purpose, as Bob: none of Alice's rows."""
    lead_a, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    lead_b, _ = await running_plan(stack, BOB, "Bob's Lead")
    async with miniapp(stack) as app:
        await app.sign_in(ALICE)
        await app.sign_in(BOB)
    now = datetime.now(UTC)
    async with as_user(stack.pool, BOB) as conn:
        for table in TABLES:
            owners = await conn.fetchval(f"SELECT array_agg(DISTINCT telegram_id) FROM {table}")
            assert owners == [BOB], table
        leads = await queries.pipeline(conn, None, now)
        assert [lead["id"] for lead in leads] == [lead_b]
        due = await queries.today(conn, None, now, timedelta(days=30))
        assert {i["lead_id"] for i in due} == {lead_b}
        assert await queries.lead(conn, None, lead_a, now) is None
        settings = await queries.settings(conn, None)
        assert settings is not None and settings["telegram_id"] == BOB
    # The service connection (the bot's) sees both: the rows are there.
    assert await stack.pool.fetchval("SELECT count(DISTINCT telegram_id) FROM lead_registry") == 2


async def test_bobs_token_reads_nothing_of_alices_with_every_owner_filter_broken(
    stack: BotStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP with Bob's session, the server's owner filters all dropped (a bug): the
    answers still hold only Bob's rows, because the reads run as Bob under RLS."""
    lead_a, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    lead_b, _ = await running_plan(stack, BOB, "Bob's Lead")
    for name in ("pipeline", "today", "lead", "settings"):
        original = getattr(queries, name)

        async def unfiltered(
            conn: Any, owner: Any, *args: Any, _f: Any = original, **kw: Any
        ) -> Any:
            return await _f(conn, None, *args, **kw)

        monkeypatch.setattr(queries, name, unfiltered)
    async with miniapp(stack) as app:
        await app.sign_in(ALICE)
        bob = await app.sign_in(BOB)
        _, body = await bob.get("pipeline")
        assert [lead["id"] for lead in body["leads"]] == [lead_b]
        _, body = await bob.get("today")
        assert {i["lead_id"] for i in body["items"]} == {lead_b}
        status, _ = await bob.get(f"leads/{lead_a}")
        assert status == 404
        _, body = await bob.get("settings")
        assert body["settings"]["telegram_id"] == BOB


async def test_closing_a_lead_stops_its_plan(stack: BotStack) -> None:
    lead_id, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE)
        status, body = await alice.post(f"leads/{lead_id}/status", {"status": "nonsense"})
        assert status == 400
        status, body = await alice.post(f"leads/{lead_id}/status", {"status": "closed_won"})
        assert (status, body["message"]) == (200, "Status: closed_won; plan stopped")
        await stack.rig.wait_state(
            stack.handle(lead_id), lambda s: s.status == PlanStatus.CANCELLED
        )

        async def rows_cancelled() -> bool:
            rows = await ReminderRepository(stack.pool).get_for_lead(lead_id)
            return all(
                r.status in (ReminderStatus.CANCELLED, ReminderStatus.COMPLETED) for r in rows
            )

        await eventually(rows_cancelled)
        status, body = await alice.post(f"leads/{lead_id}/plan", {"action": "regenerate"})
        assert status == 409 and "closed" in body["error"]
        status, detail = await alice.get(f"leads/{lead_id}")
        assert detail["lead"]["status"] == "closed_won"
        assert detail["lead"]["plan_status"] == "cancelled"


async def test_settings_move_running_plans_and_bad_input_changes_nothing(stack: BotStack) -> None:
    lead_id, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE)
        status, body = await alice.get("settings")
        assert status == 200 and body["settings"]["timezone"] == "UTC"

        for bad in (
            {"timezone": "Mars/Olympus"},
            {"window_start": "20:00", "window_end": "09:00"},
            {"window_start": "nine"},
            {"workdays_only": "yes"},
        ):
            status, body = await alice.post("settings", bad)
            assert status == 400, bad
        user = await UserRepository(stack.pool).get(ALICE)
        assert user is not None and user.timezone == "UTC"

        status, body = await alice.post(
            "settings",
            {
                "timezone": "Asia/Tokyo",
                "window_start": "08:00",
                "window_end": "18:00",
                "workdays_only": False,
            },
        )
        assert status == 200 and body["applied"] == 1
        assert body["settings"]["timezone"] == "Asia/Tokyo"
        # The running plan has the new schedule (the workflow re-fits its due times; with
        # this test's compressed 60-s days it keeps them, see workflows/timing.py).
        state = await stack.state(lead_id)
        assert state.schedule.timezone == "Asia/Tokyo"
        assert state.schedule.window_start.hour == 8

        # Vacation: pause every running plan for 3 days, then resume them.
        status, body = await alice.post("vacation", {"days": 3})
        assert status == 200 and body["applied"] == 1 and body["settings"]["paused_until"]
        assert (await stack.state(lead_id)).status == PlanStatus.PAUSED
        status, body = await alice.post("vacation", {"days": 0})
        assert status == 400
        status, body = await alice.post("vacation", {"days": None})
        assert status == 200 and body["settings"]["paused_until"] is None
        assert (await stack.state(lead_id)).status == PlanStatus.ACTIVE


async def test_pipeline_search_and_plan_actions(stack: BotStack) -> None:
    lead_a, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    lead_b = await stack.rig.new_lead(ALICE, "Grace Hopper")
    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE)
        status, body = await alice.get("pipeline")
        by_id = {lead["id"]: lead for lead in body["leads"]}
        assert by_id[lead_a]["plan_status"] == "active"
        assert by_id[lead_a]["next_step"]["position"] == 1
        assert by_id[lead_b]["plan_status"] is None and by_id[lead_b]["next_step"] is None
        status, body = await alice.get("pipeline?q=grace")
        assert [lead["id"] for lead in body["leads"]] == [lead_b]
        status, body = await alice.get("pipeline?q=100%25")
        assert body["leads"] == []

        status, body = await alice.post(f"leads/{lead_a}/plan", {"action": "pause"})
        assert (status, body["message"]) == (200, "Paused ⏸")
        assert (await stack.state(lead_a)).status == PlanStatus.PAUSED

        async def listed_paused() -> bool:
            _, body = await alice.get("pipeline")
            return any(
                lead["id"] == lead_a and lead["plan_status"] == "paused" for lead in body["leads"]
            )

        await eventually(listed_paused)
        status, body = await alice.post(f"leads/{lead_a}/plan", {"action": "resume"})
        assert status == 200
        status, body = await alice.post(f"leads/{lead_a}/plan", {"action": "stop"})
        assert (status, body["message"]) == (200, "Plan stopped 🛑")
        await stack.rig.wait_state(stack.handle(lead_a), lambda s: s.status == PlanStatus.CANCELLED)
        status, body = await alice.post(f"leads/{lead_a}/plan", {"action": "stop"})
        assert status == 409 and body["error"].startswith("Already handled")


async def test_leads_list_opens_the_mini_app(
    stack: BotStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.rig.new_lead(ALICE, "Ada Lovelace")
    await stack.say(ALICE, "/start", "Welcome")
    listing = await stack.say(ALICE, "/leads", "Ada Lovelace")
    assert not [b for b in listing.buttons if "web_app" in b.raw]  # no MINIAPP_URL: none

    monkeypatch.setenv("MINIAPP_URL", "http://127.0.0.1:8082/app")
    monkeypatch.setenv("TELEGRAM_API_BASE", stack.telegram.base_url)
    listing = await stack.say(ALICE, "/leads", "Ada Lovelace")
    [button] = [b for b in listing.buttons if "web_app" in b.raw]
    assert button.text == "📋 Open pipeline"
    assert button.raw["web_app"] == {"url": "http://127.0.0.1:8082/app"}


@pytest.mark.parametrize(
    ("url", "api_base", "usable"),
    [
        ("https://crm.example.com/app", None, True),
        ("http://127.0.0.1:8082/app", None, False),  # real Telegram opens https only
        ("http://127.0.0.1:8082/app", "http://127.0.0.1:8081", True),  # emulator / local API
        ("", None, False),
        (None, "http://127.0.0.1:8081", False),
        ("javascript:alert(1)", "http://127.0.0.1:8081", False),
    ],
)
def test_only_a_url_telegram_accepts_becomes_a_button(
    url: str | None, api_base: str | None, usable: bool
) -> None:
    assert (usable_miniapp_url(url, api_base) is not None) is usable


async def test_done_while_no_worker_runs_is_accepted_and_applied_later(stack: BotStack) -> None:
    lead_id, _ = await running_plan(stack, ALICE, "Ada Lovelace")
    async with miniapp(stack) as app:
        alice = await app.sign_in(ALICE)
        await stack.rig.stop_workers()
        status, body = await alice.post(
            f"leads/{lead_id}/step", {"step_id": 1, "plan_version": 1, "action": "done"}
        )
        assert status == 202 and body["pending"] is True
        assert body["message"].startswith("⏳ Taking longer than usual")
        stack.rig.start_workers()
        state = await stack.rig.wait_state(
            stack.handle(lead_id), lambda s: s.steps[0].status == StepStatus.COMPLETED, timeout=30
        )
        assert state.current_step_id == 2
