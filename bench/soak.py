"""The reliability soak (issue 14), long mode: the scenarios of tests/reliability/ at full
size, each on a fresh deployment — two `memberbot serve` replicas on PostgreSQL through
PgBouncer behind haproxy (deploy/'s files), sending to the fake Twilio/WeChat provider
process on loopback (tests/reliability/harness.py).

    PYTHONPATH=$PWD python3 bench/soak.py                       # everything, full size
    PYTHONPATH=$PWD python3 bench/soak.py --only kills --kills 5 --messages 300
    PYTHONPATH=$PWD python3 bench/soak.py --json bench/results/soak.json

Scenarios (tests/reliability/scenarios.py, faults.py; each asserts what must hold):

- `redemptions`: `--redemptions` (100) attempts by one member over WeChat and SMS on
  both replicas; exactly what the balance covers, ledger = balance = open lots;
- `kills`: `--messages` (2,000) SMS drained while a random replica is SIGKILLed at a
  random moment `--kills` (20) times: none lost or left `sending`, duplicates counted
  and within docs/scheduler.md's bound;
- `faults`: the provider down `--outage` (30) s, a 429 with `Retry-After: --retry-after`
  (5), hanging `--hang` (60) s, then 21610 / 21211;
- `msgids`: `--msgids` (200) WeChat MsgIds delivered 3× at once: one effect each.

Needs PostgreSQL (`--pg-url`, the server's `postgres` database; `--db` is dropped and
created for each scenario) and Debian's haproxy and pgbouncer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.faults import provider_faults  # noqa: E402
from tests.reliability.harness import Soak, recreate_database  # noqa: E402
from tests.reliability.scenarios import (  # noqa: E402
    outbox_under_kills,
    redemptions,
    repeated_msgids,
)

SCENARIOS = ("redemptions", "kills", "faults", "msgids")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db", default="memberbot_soak")
    p.add_argument("--only", choices=SCENARIOS, action="append")
    p.add_argument("--redemptions", type=int, default=100)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--outage", type=float, default=30)
    p.add_argument("--retry-after", type=int, default=5)
    p.add_argument("--hang", type=float, default=60)
    p.add_argument("--batch", type=int, default=20, help="messages per fault phase")
    p.add_argument("--msgids", type=int, default=200)
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def _run(args: argparse.Namespace, name: str) -> dict:
    runs = {
        "redemptions": lambda s: redemptions(s, attempts=args.redemptions),
        "kills": lambda s: outbox_under_kills(
            s, messages=args.messages, kills=args.kills, seed=args.seed
        ),
        "faults": lambda s: provider_faults(
            s,
            outage=args.outage,
            retry_after=args.retry_after,
            hang=args.hang,
            batch=args.batch,
        ),  # fmt: skip
        "msgids": lambda s: repeated_msgids(s, msgids=args.msgids),
    }

    async def scenario(workdir: Path) -> dict:
        await recreate_database(args.pg_url, args.db)
        soak = Soak(workdir, pg_admin_url=args.pg_url, dbname=args.db)
        try:
            started = time.monotonic()
            await asyncio.to_thread(soak.start)
            await soak.open()
            figures = await runs[name](soak)
            figures["total_seconds_with_startup"] = round(time.monotonic() - started, 1)
            return figures
        finally:
            await soak.close()
            soak.stop()
            trace = soak.tracebacks()
            if trace:
                print(trace, file=sys.stderr)
            await recreate_database(args.pg_url, args.db, drop_only=True)

    with tempfile.TemporaryDirectory(prefix=f"soak-{name}-") as tmp:
        return asyncio.run(scenario(Path(tmp)))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
    }
    for name in args.only or SCENARIOS:
        print(f"== {name}", flush=True)
        results[name] = _run(args, name)
        print(json.dumps(results[name], ensure_ascii=False, indent=1, default=str), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
