"""The HTTP side: start/stop on a port, the token check, and each request through its fault."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from emulators.serving import LocalServer
from emulators.telegram.faults import FaultsMixin
from emulators.telegram.webhook import WebhookMixin
from emulators.telegram.wire import ApiError, drop, json_response, read_params


class ServerMixin(WebhookMixin, FaultsMixin, LocalServer):
    """Serves ``/bot{token}/{method}``; state survives a stop and a restart (an outage)."""

    host: str | None = None
    port: int | None = None
    _app_hooks: tuple[Callable[[web.Application], None], ...] = ()

    @property
    def token(self) -> str:
        """A token the emulator accepts and whose prefix matches the bot id (aiogram checks)."""
        return self._token or f"{self.bot.id}:emulator-token"

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port); returns ``base_url``.

        May be called again after ``stop()`` (e.g. with the old port) to emulate an outage;
        state survives restarts.
        """
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_http)
        for hook in self._app_hooks:
            hook(app)
        # handler_cancellation: a poller that hangs up must not keep a long-poll open.
        _, bound_port = await self._listen(
            app, host, port, handler_cancellation=True, access_log=None, shutdown_timeout=1
        )
        self._closing = False
        self.host = host
        self.port = bound_port
        if self.webhook.url:
            self._ensure_webhook_task()
        return self.base_url

    def add_app_hook(self, hook: Callable[[web.Application], None]) -> None:
        """Run ``hook(app)`` on the server's aiohttp app at every ``start()``.

        Why: extra pages (the web chat) can share the emulator's port; a fresh app is built
        on each start, and aiohttp freezes routes once serving, so hooks must come first.
        """
        if self._runner is not None:
            raise RuntimeError("add app hooks before start()")
        self._app_hooks = (*self._app_hooks, hook)

    async def stop(self) -> None:
        """Stop listening; pending long-polls return empty first so shutdown is quick."""
        self._closing = True
        self._bump()
        await self._stop_webhook_task()
        await self._close_runner()

    def _token_ok(self, token: str) -> bool:
        if self._token is not None:
            return token == self._token
        prefix, _, rest = token.partition(":")
        return prefix.isdigit() and bool(rest)

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        token, method = request.match_info["token"], request.match_info["method"]
        if not self._token_ok(token):
            return json_response(ApiError(401, "Unauthorized").payload(), 401)
        try:
            params = await read_params(request)
        except ApiError as exc:
            self._record(self._canonical(method), {}, exc.status, description=exc.description)
            return json_response(exc.payload(), exc.status)
        fault = self._take_fault(method.lower(), params)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            self._record(
                self._canonical(method), params, 0, description="connection dropped", dropped=True
            )
            return drop(request)
        delay = fault.delay if fault is not None and fault.kind == "delay" else 0.0
        if delay and fault is not None and not fault.after_processing:
            await asyncio.sleep(delay)
        error = fault.error() if fault is not None and fault.kind == "error" else None
        dropped = fault is not None and fault.kind == "drop"
        status, payload = await self._invoke(method, params, error=error, dropped=dropped)
        if dropped:
            return drop(request)
        if delay and fault is not None and fault.after_processing:
            await asyncio.sleep(delay)
        return json_response(payload, status)
