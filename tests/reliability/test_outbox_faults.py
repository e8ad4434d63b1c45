"""Scenario c (short mode): the SMS provider down, throttling, hanging and refusing for
good, under both replicas' senders (tests/reliability/faults.py; bench/soak.py runs it
with a 30 s outage and a 60 s hang)."""

from __future__ import annotations

from tests.reliability.faults import provider_faults
from tests.reliability.harness import Soak


async def test_provider_faults_cost_nothing_but_time(soak: Soak):
    figures = await provider_faults(soak, outage=5, retry_after=5, hang=12, batch=10)
    print(figures)
    assert figures["codes"]["21610"]["message"][0] == "undeliverable"
    assert figures["codes"]["21211"]["identity"][0] is True
