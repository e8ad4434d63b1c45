"""What an import reports: the file-level `CsvFileError`, one `Rejection` per bad row
(line number and reason, phone numbers never repeated) and the `ImportSummary`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

MAX_REJECTIONS_SHOWN = 20


class CsvFileError(Exception):
    """The file as a whole is unusable (missing, not UTF-8, bad header). One-line message."""


@dataclass
class Rejection:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportSummary:
    """What an import did. `counts` keys: created/updated/unchanged or recorded/already."""

    kind: str
    rows: int = 0
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    rejected_rows: int = 0
    warnings: list[str] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def reject(self, line: int, reason: str, rows: int = 1) -> None:
        self.rejections.append(Rejection(line, reason))
        self.rejected_rows += rows

    @property
    def exit_code(self) -> int:
        return 1 if self.rejections else 0

    def lines(self, limit: int = MAX_REJECTIONS_SHOWN) -> list[str]:
        c = self.counts.get
        rejected = len(self.rejections)
        if self.kind == "members":
            head = (
                f"members: {self.rows} rows: {c('created', 0)} created, {c('updated', 0)} updated, "
                f"{c('unchanged', 0)} unchanged, {rejected} rejected"
            )
        else:
            head = (
                f"purchases: {self.rows} rows, {self.records} receipts: "
                f"{c('recorded', 0)} recorded, {c('already', 0)} already recorded, "
                f"{rejected} rejected"
            )
            if "returned" in self.counts:
                head += f"; {c('returned')} returns recorded"
        out = [head] + [str(r) for r in sorted(self.rejections, key=lambda r: r.line)[:limit]]
        if rejected > limit:
            out.append(f"… and {rejected - limit} more")
        return out


PHONE_COLUMNS = frozenset({"phone", "referrer"})
"""Cells holding a phone number: a rejection never repeats them (the reason of a bad
number already shows it masked)."""


def validation_reason(exc: ValidationError, column_of: Callable[[tuple], str] | None = None) -> str:
    """Every error of the row, "; "-separated, each naming its column."""
    return "; ".join(_error_reason(err, column_of) for err in exc.errors())


def _error_reason(err: Any, column_of: Callable[[tuple], str] | None) -> str:
    loc = tuple(err["loc"])
    name = column_of(loc) if column_of else ".".join(str(p) for p in loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{name}: missing"
    given = err.get("input")
    if name in PHONE_COLUMNS:
        given = None
    if isinstance(given, str | int) and not isinstance(given, bool) and len(str(given)) <= 40:
        return f"{name}: {msg} (got {given!r})" if name else msg
    return f"{name}: {msg}" if name else msg
