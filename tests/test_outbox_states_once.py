"""The outbox's states are stated once (ISSUE 11, "each fact stated once"): in
`models/outbox/states.py`. The planner and the sender import them from there: no module
of `scheduler/` names an outbox state in a constant of its own. (Other state machines of
the domain — bind codes, the inbound log — may share a word such as "failed".)"""

from __future__ import annotations

import ast
from pathlib import Path

from models.outbox.states import STATUSES

REPO = Path(__file__).resolve().parent.parent
DEFINING = REPO / "models" / "outbox" / "states.py"


def state_constants(path: Path) -> list[str]:
    """Module-level names bound to an outbox state's string in `path`."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        pairs = []
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs += zip(target.elts, value.elts, strict=False)
            else:
                pairs.append((target, value))
        for name, val in pairs:
            if isinstance(val, ast.Constant) and val.value in STATUSES:
                found.append(f"{path.relative_to(REPO)}: {ast.unparse(name)} = {val.value!r}")
    return found


def test_only_the_outbox_defines_its_states():
    stated = [
        line
        for path in sorted((REPO / "scheduler").rglob("*.py"))
        for line in state_constants(path)
    ]
    assert stated == []


def test_the_check_sees_the_defining_module():
    """The scan finds the states where they are defined (so an empty answer above means
    none elsewhere, not a scan that finds nothing)."""
    names = {line.split(": ", 1)[1].split(" = ")[0] for line in state_constants(DEFINING)}
    assert {"QUEUED", "SUPPRESSED", "PLANNED"} <= names
