"""The aiohttp plumbing both emulators share: listen on a local port, stop, ``async with``."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from aiohttp import web


class LocalServer:
    """A server started by ``start()`` and stopped by ``stop()``, or around an ``async with``."""

    _runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        raise NotImplementedError

    async def stop(self) -> None:
        await self._close_runner()

    async def _listen(
        self, app: web.Application, host: str, port: int, **runner_options: Any
    ) -> tuple[str, int]:
        """Serve ``app`` on host:port (0 picks a free port); returns the bound address."""
        runner = web.AppRunner(app, **runner_options)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        return str(bound_host), int(bound_port)

    async def _close_runner(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
