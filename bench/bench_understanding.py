"""How well sentences are understood: accuracy per intent, confusions, µs per message.

    PYTHONPATH=$PWD python bench/bench_understanding.py            # both parts
    PYTHONPATH=$PWD python bench/bench_understanding.py --wrong    # and every miss

The corpus (bench/corpus/, written for this project) has a tuning part
(messages.jsonl: the rules were written against it) and a held-out part
(messages_heldout.jsonl: written before the rules were tuned, never tuned on).
Each message goes through the keyword router first and the understanding layer
when no keyword matched, as in the bot (`bot.understand.evaluate`). The time is
the CPU time of that whole path per message, uncached, after a warm-up pass.
"""

from __future__ import annotations

import argparse
import time

from bot.router import Router
from bot.understand.engine import Understander
from bot.understand.evaluate import DEFAULT_CATALOGUE, HELD_OUT, TUNING, evaluate, load, understood


def _cpu_micros(rows: list[dict], rounds: int = 20) -> float:
    router, understander = Router(), Understander(DEFAULT_CATALOGUE)
    texts = [r["text"] for r in rows]
    for text in texts:
        understood(router, understander, text)
    started = time.process_time()
    for _ in range(rounds):
        for text in texts:
            understood(router, understander, text)
    return (time.process_time() - started) / (rounds * len(texts)) * 1e6


def report(name: str, rows: list[dict], show_wrong: bool) -> None:
    result = evaluate(rows)
    print(f"\n== {name}: {result.right}/{result.total} = {result.accuracy:.1%}"
          f"   missed stops {result.missed_stops}, false stops {result.false_stops}")  # fmt: skip
    print(f"{'intent':<12}{'right':>7}{'total':>7}{'acc':>8}")
    for intent, (right, total) in sorted(result.per_intent.items()):
        print(f"{intent:<12}{right:>7}{total:>7}{right / total:>8.1%}")
    if result.confusions:
        print("confusions (expected -> got: count):")
        for (want, got), n in result.confusions.most_common():
            print(f"  {want} -> {got}: {n}")
    if show_wrong:
        for text, want, got, args in result.wrong:
            print(f"  ✗ {text!r}: want {want}, got {got} {args!r}")
    print(f"CPU per message (router + understanding, uncached): {_cpu_micros(rows):.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wrong", action="store_true", help="list every message missed")
    args = parser.parse_args()
    report("tuning (messages.jsonl)", load(TUNING), args.wrong)
    report("held-out (messages_heldout.jsonl)", load(HELD_OUT), args.wrong)


if __name__ == "__main__":
    main()
