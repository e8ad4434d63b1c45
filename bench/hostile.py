"""Hostile requests through the deployment (long mode): no 5xx, no traceback, no row changed.

    python bench/hostile.py                                  # >= 10,000 + 3,000 + schemathesis
    python bench/hostile.py --requests 20000 --examples 30 --by-route

Starts the deployment of deploy/ on loopback (`tests.reliability.stack`: PgBouncer, two
`memberbot serve` replicas of this checkout, haproxy) on PostgreSQL, in a database
`--dbname` that is DROPPED and created again (never point it at data), and runs
`tests.reliability.hostile_scenario`: seeds a store, an assistant, a member and one
WeChat message through the API; fingerprints every table (row count + sha256 of the rows,
straight from PostgreSQL); fires at least `--requests` unauthenticated, badly signed,
malformed, oversized and hostile requests at every route of the app and at unknown paths
(`tests.reliability.hostile`), `--authed` more with a valid key or token and hostile
bodies, paths and queries, and schemathesis over /api/openapi.json without a credential;
fingerprints again; then schemathesis with the key and with the assistant's token
(`--examples` per operation; these may create rows). tests/reliability/test_hostile_stack.py
is the short mode of the same run.

Exit status 1 if any answer was a 5xx, any body or replica log holds "Traceback", a
schemathesis run failed, or any table changed but `staff_sign_in_failures` (a refused
sign-in is recorded so that replicas share the limit). Needs haproxy and pgbouncer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.harness import recreate_database  # noqa: E402
from tests.reliability.hostile_scenario import SETTINGS, Sizes, run  # noqa: E402
from tests.reliability.stack import Stack  # noqa: E402


def by_route(title: str, fired) -> None:
    print(f"  {title}, by route:")
    routes: dict[tuple[str, str], dict] = {}
    for (method, route, status), n in fired.by_route.items():
        routes.setdefault((method, route), {})[status] = n
    for (method, route), statuses in sorted(routes.items()):
        counts = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str))
        print(f"    {method:6} {route:45} {counts}")


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--dbname", default="memberbot_hostile_bench", help="dropped and created")
    p.add_argument("--requests", type=int, default=10_000, help="unauthenticated/invalid")
    p.add_argument("--authed", type=int, default=3_000, help="valid key/token, hostile rest")
    p.add_argument("--examples", type=int, default=100, help="schemathesis per operation")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--by-route", action="store_true", help="answers by route and status")
    args = p.parse_args()
    sizes = Sizes(args.requests, args.authed, args.examples, args.concurrency, args.seed)
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    await recreate_database(args.pg_admin_url, args.dbname)
    started = time.monotonic()
    try:
        with Stack(work, pg_admin_url=args.pg_admin_url, dbname=args.dbname,
                   settings=SETTINGS) as stack:  # fmt: skip
            stack.start(replicas=2)
            report = await run(stack, work, sizes)
    finally:
        await recreate_database(args.pg_admin_url, args.dbname, drop_only=True)
    print(f"two replicas behind haproxy and PgBouncer on PostgreSQL; seed {args.seed}; "
          f"{time.monotonic() - started:.0f} s in all; logs in {work}")  # fmt: skip
    for line in report.lines():
        print(line)
    if args.by_route:
        by_route("unauthenticated/invalid", report.unauthenticated)
        by_route("valid key/token", report.authed)
    for problem in report.problems[:30]:
        print("PROBLEM: " + problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
