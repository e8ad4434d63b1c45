"""Hostile requests through the deployment (short mode; `bench/hostile.py` is the long
one): two replicas on PostgreSQL behind haproxy and PgBouncer take a few thousand
unauthenticated, badly signed, malformed, oversized and hostile requests across every
route (`tests.reliability.hostile`), plus schemathesis over `/api/openapi.json` without a
credential, then with the key and the assistant's token (`hostile_scenario`).

No answer is a 5xx, no body or replica log holds a traceback, and the requests that are
not authorised or not valid change no row of any table (counts and checksums) but the
refused sign-ins. Needs PostgreSQL, haproxy and pgbouncer (tests/reliability/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.hostile_scenario import SETTINGS, Sizes, run
from tests.reliability.stack import Stack


async def test_hostile_requests_through_the_deployment(tmp_path: Path, deploy_db):
    admin_url, dbname = deploy_db
    with Stack(tmp_path, pg_admin_url=admin_url, dbname=dbname, settings=SETTINGS) as stack:
        stack.start(replicas=2)
        report = await run(stack, tmp_path, Sizes())
    print("\n".join(report.lines()))
    assert report.problems == []
    assert report.unauthenticated.total >= Sizes().requests
    assert report.unauthenticated.server_errors == report.authed.server_errors == 0
    assert report.changed == []
    # it reached every route, past the edge to the credential check where there is one,
    # with refusals of every kind; schemathesis' valid requests were accepted
    answered = {(m, route): status for (m, route, status) in report.unauthenticated.by_route}
    assert {(m, path) for m, path, _kind in report.routes} <= set(answered)
    refused = {(m, route) for (m, route, status) in report.unauthenticated.by_route
               if status in (401, 403, 303)}  # fmt: skip
    guarded = {(m, p) for m, p, kind in report.routes if kind not in ("none", "form")}
    assert guarded <= refused, guarded - refused
    for status in (400, 401, 403, 404, 413, 415, 422):
        assert report.unauthenticated.statuses[status] + report.authed.statuses[status] > 0
    assert any(200 <= s < 300 for s in report.fuzz_key.statuses)
    assert any(200 <= s < 300 for s in report.fuzz_token.statuses)
