"""Webhook mode: setWebhook/deleteWebhook/getWebhookInfo and pushing updates to the bot."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout

from emulators.telegram.model import WebhookDelivery, WebhookInfo
from emulators.telegram.state import EmulatorCore, Handler
from emulators.telegram.wire import ApiError, bad, decode_params, read_webhook_reply


class WebhookMixin(EmulatorCore):
    """Delivers queued updates by POST while a webhook is set, as Telegram does."""

    _webhook_task: asyncio.Task[None] | None = None

    def _reset_state(self) -> None:
        super()._reset_state()
        self.webhook_deliveries: list[WebhookDelivery] = []

    def _api_methods(self) -> dict[str, Handler]:
        return super()._api_methods() | {
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }

    async def post_update_to(
        self,
        url: str,
        secret_token: str | None = None,
        *,
        update: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> int:
        """POST one update to a webhook URL the way Telegram does; returns the HTTP status.

        Without ``update`` the oldest pending update is sent and confirmed on a 2xx reply.
        A method in the reply body (webhook reply) is executed like a normal call.
        """
        if update is None:
            if not self._updates:
                raise LookupError("no pending update to post")
            update = self._updates[0]
            from_queue = True
        else:
            from_queue = False
        async with ClientSession(timeout=ClientTimeout(total=timeout)) as session:
            status = await self._post_update(session, url, secret_token, update)
        if from_queue and 200 <= status < 300:
            self._confirm(update)
        return status

    def _confirm(self, update: dict[str, Any]) -> None:
        """Drop ``update`` from the queue if it is still the oldest one."""
        if self._updates and self._updates[0] is update:
            self._updates.pop(0)
            self._bump()

    async def _post_update(
        self, session: ClientSession, url: str, secret: str | None, update: dict[str, Any]
    ) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        reply: dict[str, Any] | None = None
        try:
            async with session.post(url, json=update, headers=headers) as response:
                status = response.status
                if 200 <= status < 300:
                    reply = await read_webhook_reply(response)
        except (ClientError, TimeoutError) as exc:
            self.webhook_deliveries.append(
                WebhookDelivery(update.get("update_id"), url, None, repr(exc), self._clock())
            )
            raise
        self.webhook_deliveries.append(
            WebhookDelivery(update.get("update_id"), url, status, None, self._clock())
        )
        if reply is not None and isinstance(reply.get("method"), str):
            # Telegram executes a method returned in the webhook response body.
            params = {k: v for k, v in reply.items() if k != "method"}
            try:
                decoded = decode_params(params)
            except ApiError:
                return status
            await self._invoke(reply["method"], decoded, source="webhook-reply")
        return status

    def _ensure_webhook_task(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def _stop_webhook_task(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None

    async def _webhook_loop(self) -> None:
        """Push pending updates to the registered webhook, one at a time, retrying failures."""
        async with ClientSession(timeout=ClientTimeout(total=30)) as session:
            while self.webhook.url and not self._closing:
                if not self._updates:
                    with contextlib.suppress(TimeoutError):
                        await self._wait_until(
                            lambda: bool(self._updates) or not self.webhook.url, None
                        )
                    continue
                update, url = self._updates[0], self.webhook.url
                try:
                    status = await self._post_update(
                        session, url, self.webhook.secret_token, update
                    )
                except (ClientError, TimeoutError) as exc:
                    self.webhook.last_error_date = self._now()
                    self.webhook.last_error_message = f"Connection failed: {exc}"
                    await asyncio.sleep(self.webhook_retry_delay)
                    continue
                if 200 <= status < 300:
                    self._confirm(update)
                else:
                    self.webhook.last_error_date = self._now()
                    self.webhook.last_error_message = f"Wrong response from the webhook: {status}"
                    await asyncio.sleep(self.webhook_retry_delay)

    # ------------------------------------------------------------------ API methods

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if not isinstance(url, str):
            raise bad("bad webhook: Failed to resolve host")
        if url and not re.match(r"^https?://\S+$", url):
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.match(r"^[A-Za-z0-9_-]{1,256}$", str(secret)):
            raise bad("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        allowed = params.get("allowed_updates")
        max_connections = params.get("max_connections")
        self.webhook = WebhookInfo(
            url=url,
            secret_token=str(secret) if secret is not None else None,
            max_connections=max_connections if isinstance(max_connections, int) else 40,
            allowed_updates=[str(a) for a in allowed] if isinstance(allowed, list) else None,
            ip_address="127.0.0.1" if url else None,
        )
        self._poll_generation += 1  # pending getUpdates end with a conflict
        self._bump()
        if url:
            self._ensure_webhook_task()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        self.webhook = WebhookInfo()
        self._bump()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook.url:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.ip_address:
                info["ip_address"] = self.webhook.ip_address
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
        if self.webhook.last_error_date is not None:
            info["last_error_date"] = self.webhook.last_error_date
            info["last_error_message"] = self.webhook.last_error_message
        return info
