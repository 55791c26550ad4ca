"""`python -m webapp`: the Mini App server (stateless; run as many copies as needed)."""

from __future__ import annotations

import asyncio
import logging
import signal

from settings import load_settings
from webapp.server import serve


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(load_settings(), stop)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_main())


if __name__ == "__main__":
    main()
