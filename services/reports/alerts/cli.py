"""`python -m services.reports alerts list [--status dead|pending|sent]` and
`python -m services.reports alerts resend (--all | ID...)`: what an operator does with deliveries
the sender gave up on."""

from __future__ import annotations

import argparse
import sys

import psycopg

from services.reports.alerts.store import AlertStore
from shared import db
from shared.settings import CommonSettings


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m services.reports alerts")
    commands = top.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list deliveries (dead ones by default)")
    listing.add_argument("--status", choices=("dead", "pending", "sent", "all"), default="dead")
    resend = commands.add_parser("resend", help="make dead deliveries pending again, with fresh attempts")
    chosen = resend.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true")
    chosen.add_argument("ids", nargs="*", type=int, default=[])
    return top


async def run(common: CommonSettings, argv: list[str]) -> int:
    args = parser().parse_args(argv)
    pool = db.pool(common.database_url, min_size=1, max_size=1)
    await pool.open()
    try:
        return await _command(AlertStore(pool), args)
    except psycopg.errors.UndefinedTable:
        print("alerts: the tally_alerts tables are missing: apply the migrations (the ledger does, or make up)", file=sys.stderr)
        return 2
    finally:
        await pool.close()


async def _command(store: AlertStore, args: argparse.Namespace) -> int:
    if args.command == "list":
        for row in await store.listing(None if args.status == "all" else args.status):
            print(f"{row.id}\t{row.status}\t{row.channel}\t{row.event}\t{row.alert_key}\tattempts={row.attempts}"
                  f"\tdecided={row.decided_at.isoformat()}\t{row.last_error or ''}")
        return 0
    if not args.all and not args.ids:
        print("alerts resend: give delivery ids or --all", file=sys.stderr)
        return 2
    print(f"{await store.resend(None if args.all else args.ids)} deliveries pending again")
    return 0
