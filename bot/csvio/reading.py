"""Reading a sheet: its columns, the whole-file check (`check_file`: readable, UTF-8,
the required header columns) and the row reader (non-empty cells, with line numbers)."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.csvio.report import CsvFileError, ImportSummary

MEMBER_COLUMNS = (
    "phone",
    "name",
    "gender",
    "birthday",
    "birthday_calendar",
    "wedding_anniversary",
    "store",
    "assistant",
    "card_no",
    "preferred_contact",
    "wechat_openid",
    "locale",
    "join_date",
)
EXPORT_EXTRA_COLUMNS = ("points", "tier", "cumulative_spend", "last_purchase", "stopped")
EXPORT_COLUMNS = MEMBER_COLUMNS + EXPORT_EXTRA_COLUMNS

PURCHASE_FIELDS = (
    "receipt_no",
    "phone",
    "card_no",
    "store",
    "assistant",
    "amount",
    "at",
    "referrer",
)
ITEM_FIELDS = {  # CSV column → ItemIn field
    "sku": "sku",
    "name": "name",
    "category": "category",
    "brand": "brand",
    "qty": "qty",
    "item_amount": "amount",
}
PURCHASE_REQUIRED = ("receipt_no", "store", "assistant", "amount", "at")
ITEM_REQUIRED = ("sku", "name", "category", "qty", "item_amount")
RETURN_FIELD = "return_no"
"""A row with a `return_no` is a returned item of the sale `receipt_no` (`models.returns`)."""
PURCHASE_COLUMNS = (*PURCHASE_FIELDS, *ITEM_FIELDS, RETURN_FIELD)


@dataclass
class Row:
    line: int
    cells: dict[str, str]
    """Non-empty cells only, stripped, keyed by column name."""


def _check_utf8_and_count(path: Path) -> int:
    """Validate the whole file as UTF-8 before touching the database; return the data row count.

    A decoding error half-way through a streamed import would leave half a file
    loaded, so the check is a separate, cheap pass (it also sizes the progress bar).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise CsvFileError(
                        f"{path}: not UTF-8 (bad byte at offset {offset + exc.start}); "
                        "save the sheet as 'CSV UTF-8'"
                    ) from None
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise CsvFileError(f"{path}: not UTF-8 (truncated character at the end)") from None
    except FileNotFoundError:
        raise CsvFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise CsvFileError(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise CsvFileError(f"cannot read {path}: {exc.strerror}") from None
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return max(sum(1 for row in csv.reader(fh) if any(c.strip() for c in row)) - 1, 0)


_REQUIRED = {"members": ("phone",), "purchases": (*PURCHASE_REQUIRED, *ITEM_REQUIRED)}


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader(fh))
        except StopIteration:
            raise CsvFileError(f"{path}: empty file (expected a header row)") from None
        except csv.Error as exc:
            raise CsvFileError(f"{path}: bad CSV header: {exc}") from None
    return [h.strip().lower() for h in header]


def check_file(path: str | Path, kind: str) -> int:
    """Check that `path` is a usable `kind` ("members" | "purchases") file: readable,
    UTF-8, with the required header columns. Returns the number of data rows.
    Raises CsvFileError naming the problem."""
    path = Path(path)
    total = _check_utf8_and_count(path)
    columns = _header(path)
    missing = [c for c in _REQUIRED[kind] if c not in columns]
    if kind == "purchases" and "phone" not in columns and "card_no" not in columns:
        missing.insert(1, "phone (or card_no)")  # either identifies the member
    if missing:
        raise CsvFileError(f"{path}: missing required column(s): {', '.join(missing)}")
    dupes = sorted({c for c in columns if c and columns.count(c) > 1})
    if dupes:
        raise CsvFileError(f"{path}: duplicate column(s): {', '.join(dupes)}")
    return total


def read_rows(path: Path, *, known: tuple[str, ...], summary: ImportSummary) -> Iterator[Row]:
    """Yield the data rows (non-empty cells only) with their starting line numbers.
    The header must have passed `check_file`."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        columns = [h.strip().lower() for h in next(reader)]
        unknown = [c for c in columns if c and c not in known]
        if unknown:
            summary.warnings.append(f"ignoring unknown column(s): {', '.join(unknown)}")
        keep = [(i, c) for i, c in enumerate(columns) if c in known]
        last_line = reader.line_num
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = last_line + 1
                last_line = reader.line_num
                summary.rows += 1
                summary.reject(line, f"malformed CSV: {exc}")
                continue
            line = last_line + 1
            last_line = reader.line_num
            n = len(raw)
            cells = {c: v for i, c in keep if i < n and (v := raw[i].strip())}
            if not cells and not any(c.strip() for c in raw):
                continue
            summary.rows += 1
            if n > len(columns) and any(c.strip() for c in raw[len(columns) :]):
                summary.reject(line, f"{n} cells but the header has {len(columns)} columns")
                continue
            yield Row(line, cells)
