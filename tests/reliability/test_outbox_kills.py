"""Scenario b (short mode): the outbox drains while replicas are killed with SIGKILL —
nothing lost, nothing left `sending`, duplicates only from a kill and within the bound
of docs/scheduler.md (tests/reliability/scenarios.py; bench/soak.py: 20 kills, 2,000
messages)."""

from __future__ import annotations

from tests.reliability.harness import Soak
from tests.reliability.scenarios import outbox_under_kills


async def test_sigkilled_replicas_lose_no_message(soak: Soak):
    figures = await outbox_under_kills(soak, messages=300, kills=5)
    print(figures)
    assert figures["lost"] == figures["stuck_sending"] == 0
    assert figures["statuses"] == {"sent": figures["messages"]}
