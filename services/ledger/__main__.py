"""python -m services.ledger            run the ledger (health and metrics on LEDGER_PORT, 4003)
python -m services.ledger replay     rebuild every table from the topics and swap it in
python -m services.ledger replay --verify   rebuild aside and print every difference
python -m services.ledger reconcile  compare usage, priced topics and Postgres; exit 1 on any gap
python -m services.ledger dlq list|show|replay   what the ledger set aside, and feeding it back"""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.config import ConfigError
from shared.dlq_repair import add_dlq_parser
from shared.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    replay = commands.add_parser("replay", help="rebuild every table from offset 0 of the topics")
    replay.add_argument("--verify", action="store_true", help="compare a rebuild with the live tables; change nothing")
    replay.add_argument("--drop-backup", action="store_true", help="drop the replaced schema instead of keeping it as tally_backup_<time>")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    reconcile = commands.add_parser("reconcile", help="check usage → priced → Postgres, request by request and total by total")
    reconcile.add_argument("--settle", type=float, default=0.0, help="re-check for up to this many seconds until clean")
    add_dlq_parser(commands)
    args = parser.parse_args(argv)

    from services.ledger.settings import ledger_settings

    try:
        settings = ledger_settings()
    except ConfigError as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    configure_logging("ledger", settings.log_level)
    if args.command == "replay":
        from services.ledger.replay import replay_command

        return asyncio.run(replay_command(settings, verify=args.verify, keep_backup=not args.drop_backup,
                                          progress=not args.no_progress))
    if args.command == "reconcile":
        from services.ledger.reconcile import reconcile_command

        return asyncio.run(reconcile_command(settings, settle_s=args.settle))
    if args.command == "dlq":
        from services.ledger.dlq import run

        return asyncio.run(run(settings, args))
    from services.ledger.app import build_app
    from shared.service import run_service

    run_service(build_app(settings), settings.host, settings.port, stop_deadline_s=settings.stop_deadline_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
