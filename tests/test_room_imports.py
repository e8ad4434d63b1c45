"""Modules moved out of `bot/` load without the edge: importing each on its own, in a
fresh interpreter, brings in no `bot` module and no HTTP client (ISSUE 11: arrows one
way, `bot` → `scheduler` → `models`; the scheduler imports no aiohttp)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EDGE = ("bot", "aiohttp", "twilio", "wechatpy")

MODULES = [
    "models.group_commit",
    "models.rawdb",
    "models.inbound",
    "scheduler.providers",
    "scheduler.transports",
]


@pytest.mark.parametrize("module", MODULES)
def test_loads_without_the_edge(module):
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {EDGE!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == []
