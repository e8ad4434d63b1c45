"""Scenario d (short mode): a WeChat MsgId delivered 3× at once — to each replica and
through haproxy — has one effect (tests/reliability/scenarios.py; bench/soak.py: 200
MsgIds)."""

from __future__ import annotations

from tests.reliability.harness import Soak
from tests.reliability.scenarios import STEPS, repeated_msgids


async def test_each_msgid_has_one_effect_across_replicas(soak: Soak):
    figures = await repeated_msgids(soak, msgids=10 * len(STEPS))
    print(figures)
    assert figures["effects_per_member"]["vouchers"] == {1: figures["members"]}
