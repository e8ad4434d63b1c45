"""The understanding layer against its own corpus (bench/corpus, docs/understanding.md).

The floors are what `bench/bench_understanding.py` measured when the layer landed,
minus a little: held-out 196/204 = 96.1 % (floor 94 %), tuning 447/447 (floor 97 %);
no clear stop missed and no false stop in either part, ever.
"""

from __future__ import annotations

import pytest

from bot.understand.evaluate import HELD_OUT, TUNING, evaluate, load

HELD_OUT_FLOOR = 0.94
TUNING_FLOOR = 0.97


def _misses(result) -> str:
    return "\n".join(f"{t!r}: want {w}, got {g} {a!r}" for t, w, g, a in result.wrong)


def test_the_corpus_is_big_enough_and_bilingual():
    rows = load(TUNING) + load(HELD_OUT)
    assert len(rows) >= 600
    assert len(load(HELD_OUT)) >= 150
    langs = {r["lang"] for r in rows}
    assert langs == {"zh", "en"}
    intents = {r["intent"] for r in rows}
    assert intents >= {
        "points", "redeem", "vouchers", "pickup", "mail", "stop", "resume", "help", "bind",
        "confirm", "smalltalk", "handoff", "unknown", "maybe_stop", "clarify",
    }  # fmt: skip


@pytest.mark.parametrize(("path", "floor"), [(HELD_OUT, HELD_OUT_FLOOR), (TUNING, TUNING_FLOOR)])
def test_accuracy_stays_above_its_floor(path, floor):
    result = evaluate(load(path))
    assert result.accuracy >= floor, _misses(result)


@pytest.mark.parametrize("path", [HELD_OUT, TUNING])
def test_no_clear_stop_is_missed_and_nothing_else_stops(path):
    result = evaluate(load(path))
    assert (result.missed_stops, result.false_stops) == (0, 0), _misses(result)
