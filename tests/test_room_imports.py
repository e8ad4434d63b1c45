"""Modules moved out of `bot/` load without the edge: importing each on its own, in a
fresh interpreter, brings in no `bot` module and no HTTP client — and, for `models`,
no template engine either (ISSUE 11: arrows one way, `bot` → `scheduler` → `models`;
the scheduler imports no aiohttp, the domain no jinja2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EDGE = ("bot", "aiohttp", "twilio", "wechatpy")
"""What neither `scheduler` nor `models` may load."""

MODULES = {
    "models.group_commit": (*EDGE, "jinja2"),
    "models.rawdb": (*EDGE, "jinja2"),
    "models.rawdb_sqlite": (*EDGE, "jinja2"),
    "models.rawdb_pg": (*EDGE, "jinja2"),
    "models.inbound": (*EDGE, "jinja2"),
    "models.locale_format": (*EDGE, "jinja2"),
    "scheduler.send.providers": EDGE,
    "scheduler.send.transports": EDGE,
    "scheduler.text": EDGE,
    "scheduler.render": EDGE,
    "scheduler.message_rules": EDGE,
}


@pytest.mark.parametrize(("module", "forbidden"), MODULES.items())
def test_loads_without_the_edge(module, forbidden):
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == []
