"""Greeting notes judged by meaning: precision and recall per rule, and µs per note.

    python bench/bench_greetings.py                 # both corpus parts
    python bench/bench_greetings.py --part heldout --show
    python bench/bench_greetings.py --words-only    # the lexicon alone (before issue 12)

Each note of ``bench/corpus/greetings.jsonl`` (tuning) and ``greetings_heldout.jsonl``
(held out: written before the rules, never tuned on) is labelled ``promotion``,
``prying`` or ``warm`` and checked as an assistant's ``dormant`` note would be —
`scheduler.message_rules.check_content("dormant", note)`, where both greeting rules
apply: ``promotion_in_greeting`` and ``prying_in_dormant``. A rule's positives are the
notes with its label; a warm note refused by either rule is counted on its own line.

Speed: the notes are checked ``--repeat`` times with the caches emptied before each
pass (normalisation and the meaning cache: every note judged afresh), then once more
with them warm (what the planner sees for its repeated template texts), then afresh
with the meaning rules off (the lexicon's words alone, the check before issue 12) —
on a busy machine compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.settings.lexicon import Lexicon, normalize  # noqa: E402
from scheduler import meaning, message_rules  # noqa: E402

CORPUS = ROOT / "bench" / "corpus"
PARTS = {"tuning": CORPUS / "greetings.jsonl", "heldout": CORPUS / "greetings_heldout.jsonl"}
RULES = {"promotion": "promotion_in_greeting", "prying": "prying_in_dormant"}
KIND = "dormant"


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def broken(text: str, lexicon: Lexicon) -> set[str]:
    return {v.rule for v in message_rules.check_content(KIND, text, lexicon=lexicon)}


def score(notes: list[dict], lexicon: Lexicon) -> dict:
    """Per rule: tp, fp, fn, precision, recall; warm notes refused; the misjudged notes."""
    out: dict = {"rules": {}, "warm_refused": 0, "warm": 0, "wrong": []}
    verdicts = [(n, broken(n["text"], lexicon)) for n in notes]
    for label, rule in RULES.items():
        tp = sum(1 for n, got in verdicts if n["label"] == label and rule in got)
        fp = sum(1 for n, got in verdicts if n["label"] != label and rule in got)
        fn = sum(1 for n, got in verdicts if n["label"] == label and rule not in got)
        out["rules"][rule] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
        }
    for n, got in verdicts:
        want = {RULES[n["label"]]} if n["label"] in RULES else set()
        out["warm"] += n["label"] == "warm"
        out["warm_refused"] += n["label"] == "warm" and bool(got)
        if got != want:
            out["wrong"].append({**n, "got": sorted(got)})
    return out


def speed(notes: list[dict], lexicon: Lexicon, repeat: int) -> tuple[float, float]:
    """(µs per note with empty caches, µs per note with warm caches)."""
    texts = [n["text"] for n in notes]
    cold = 0.0
    for _ in range(repeat):
        normalize.cache_clear()
        meaning._judged.cache_clear()
        t = time.perf_counter()
        for text in texts:
            message_rules.check_content(KIND, text, lexicon=lexicon)
        cold += time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            message_rules.check_content(KIND, text, lexicon=lexicon)
    warm = time.perf_counter() - t
    n = len(texts) * repeat
    return cold / n * 1e6, warm / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=(*PARTS, "both"), default="both")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--show", action="store_true", help="print the misjudged notes")
    ap.add_argument(
        "--words-only", action="store_true", help="the lexicon alone (meaning rules off)"
    )
    args = ap.parse_args()
    if args.words_only:
        meaning.findings = lambda *a, **k: ()
    lexicon = Lexicon()
    parts = list(PARTS) if args.part == "both" else [args.part]
    for part in parts:
        notes = load(PARTS[part])
        result = score(notes, lexicon)
        cold, warm = speed(notes, lexicon, args.repeat)
        judged = meaning.findings
        meaning.findings = lambda *a, **k: ()
        words_cold, _ = speed(notes, lexicon, args.repeat)  # the same run, words only
        meaning.findings = judged
        counts = {
            k: sum(1 for n in notes if n["label"] == k) for k in ("promotion", "prying", "warm")
        }
        print(f"== {part}: {len(notes)} notes {counts}")
        for rule, r in result["rules"].items():
            print(
                f"  {rule:24} precision {r['precision']:6.1%}  recall {r['recall']:6.1%}"
                f"  (tp {r['tp']}, fp {r['fp']}, fn {r['fn']})"
            )
        print(f"  warm notes refused: {result['warm_refused']} of {result['warm']}")
        print(
            f"  {cold:.1f} µs/note judged afresh, {warm:.1f} µs/note cached "
            f"(the lexicon's words alone, same run: {words_cold:.1f} µs/note)"
        )
        if args.show:
            for w in result["wrong"]:
                print(f"    [{w['label']:9} got {','.join(w['got']) or '-':40}] {w['text']}")


if __name__ == "__main__":
    main()
