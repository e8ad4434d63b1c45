"""The rooms keep their direction (docs/design.md, ISSUE 11): the import-linter
contracts of pyproject.toml `[tool.importlinter]` — `bot` → `scheduler` → `models`
and nothing back; `models` imports no aiohttp, jinja2, wechatpy or twilio; `scheduler`
no aiohttp, wechatpy or twilio; `scheduler.plan` and `scheduler.send` neither importing
the other — are run with the suite, so CI fails the day an import goes the wrong way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def lint(config: Path, root: Path = REPO) -> subprocess.CompletedProcess:
    """Run the contracts of `config` over the packages under `root`, in a fresh process."""
    code = textwrap.dedent(
        f"""
        import sys
        from importlinter.cli import lint_imports
        sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_rooms_contracts_are_kept():
    run = lint(REPO / "pyproject.toml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout


def test_the_contracts_catch_an_import_against_the_direction(tmp_path):
    """The same contracts on a copy of the code with one scheduler module importing bot:
    the check must fail, naming the import."""
    for room in ("bot", "models"):
        (tmp_path / room).symlink_to(REPO / room)
    # a copy of scheduler with one module reaching back into bot
    bad = tmp_path / "scheduler"
    shutil.copytree(REPO / "scheduler", bad, ignore=shutil.ignore_patterns("__pycache__"))
    render = bad / "render.py"
    render.write_text(
        "from bot.conversation import Reply\n" + render.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    config = tmp_path / "pyproject.toml"
    config.write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    run = lint(config, tmp_path)
    assert run.returncode != 0
    assert "scheduler.render -> bot.conversation" in run.stdout
