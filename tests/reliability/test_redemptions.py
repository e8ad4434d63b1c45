"""Scenario a (short mode): concurrent redemptions of one member on both replicas take
exactly what the balance covers, never below zero, ledger = balance = open lots
(tests/reliability/scenarios.py; bench/soak.py runs it at full size)."""

from __future__ import annotations

from tests.reliability.harness import Soak
from tests.reliability.scenarios import redemptions


async def test_concurrent_redemptions_take_what_the_balance_covers(soak: Soak):
    figures = await redemptions(soak, attempts=20)
    print(figures)
    assert figures["vouchers_issued"] == figures["covered"] < figures["attempts"]
