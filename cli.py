"""The `leadpilot` command: one entry point for every process of the stack."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadpilot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser(
        "dev", help="run the whole stack locally (PostgreSQL, Temporal, worker, bot)"
    )
    dev.add_argument(
        "--day-seconds",
        type=int,
        default=None,
        help="length of a plan day in seconds (demo time scale)",
    )
    sub.add_parser("migrate", help="apply pending database migrations (DATABASE_URL)")
    sub.add_parser("worker", help="run the Temporal worker")
    sub.add_parser("bot", help="run the Telegram bot")
    doctor = sub.add_parser(
        "doctor", help="check that every plan's rows agree with its workflow (ops/doctor.py)"
    )
    doctor.add_argument("--repair", action="store_true", help="close orphaned open rows")
    args = parser.parse_args(argv)

    if args.command == "dev":
        import devstack

        return devstack.main(args.day_seconds)
    if args.command == "migrate":
        from storage.migrate import main as migrate

        return migrate([])
    if args.command == "doctor":
        from ops.doctor import main as doctor_main

        return doctor_main(["--repair"] if args.repair else [])
    if args.command == "worker":
        import worker

        worker.main()
        return 0
    import bot.app

    bot.app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
