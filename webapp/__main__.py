"""`python -m webapp`: the Mini App server (stateless; run as many copies as needed)."""

from __future__ import annotations

import asyncio
import signal

from logging_setup import setup_logging
from settings import Settings, load_settings
from webapp.server import serve


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
