"""Bulk CSV load and export: `memberbot import members|purchases`, `memberbot export members`.

The file format is CONTRACT.md "CSV files": UTF-8 (a BOM is accepted, as
spreadsheet programs write one) with a header row.

- Members: the member JSON field names as columns (`phone` required, the others
  optional; `locale`, the member's reply language, is exported and read back
  too). An empty cell means "not given" (the stored value is kept). The
  export-only columns (`points`, `tier`, `cumulative_spend`, `last_purchase`,
  `stopped`) are ignored, so an export can be imported back unchanged; other
  unknown columns are ignored with a warning.
- Purchases: one row per item. Rows sharing a `receipt_no` are one purchase and
  must be consecutive; on the second and later rows of a receipt the
  purchase-level cells (phone, store, assistant, amount, at, ...) may be left
  empty, and when given must agree with the first row. A `receipt_no` that comes
  back after other receipts is rejected ("split across non-adjacent rows")
  unless that receipt was recorded before this run. Required columns: the
  contract's list (`card_no` may stand in for `phone`); `brand` and `card_no`
  are optional extras. An `at` without an offset is brand-local time; an
  unknown phone is enrolled by `record_purchase`.

Loading is streaming and idempotent: re-running a file changes nothing (members
whose values already match are "unchanged"; purchases are recorded once per
`receipt_no`, DOMAIN.md §2 "no double points"). A bad row never stops the good
ones: each rejection carries its line number and reason.

Speed: rows are applied in batches of `batch_size` per transaction. Before a
batch, a few queries settle what needs no domain call: members whose stored
values already match are "unchanged", receipts already recorded are "already",
unknown store/assistant/card codes are rejected. The rest runs optimistically in
one transaction with no savepoints; if anything in it fails, the batch is rolled
back and re-run with one SAVEPOINT per record (a record that fails half-way
leaves no partial writes and the others still land), and if even that fails,
one transaction per record.

The export writes UTF-8 with a BOM so that Excel opens Chinese names correctly.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from models.clock import local_date
from models.errors import DomainError
from models.members import MemberIn, parse_day, upsert_member
from models.phone import mask_phone
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.rules import LoyaltyRules
from models.strict import ascii_int
from models.tables import Assistant, Identity, Member, Purchase, Store

log = logging.getLogger("memberbot.csv")

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
PURCHASE_COLUMNS = (*PURCHASE_FIELDS, *ITEM_FIELDS)

DEFAULT_BATCH = 500
MAX_REJECTIONS_SHOWN = 20


class CsvFileError(Exception):
    """The file as a whole is unusable (missing, not UTF-8, bad header). One-line message."""


# --------------------------------------------------------------------------- results


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
        out = [head] + [str(r) for r in sorted(self.rejections, key=lambda r: r.line)[:limit]]
        if rejected > limit:
            out.append(f"… and {rejected - limit} more")
        return out


# --------------------------------------------------------------------------- reading


@dataclass
class _Row:
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


def _read_rows(path: Path, *, known: tuple[str, ...], summary: ImportSummary) -> Iterator[_Row]:
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
            if not any(c.strip() for c in raw):
                continue
            summary.rows += 1
            if len(raw) > len(columns) and any(c.strip() for c in raw[len(columns) :]):
                summary.reject(line, f"{len(raw)} cells but the header has {len(columns)} columns")
                continue
            cells = {c: raw[i].strip() for i, c in keep if i < len(raw) and raw[i].strip()}
            yield _Row(line, cells)


PHONE_COLUMNS = frozenset({"phone", "referrer"})
"""Cells holding a phone number: a rejection never repeats them (the reason of a bad
number already shows it masked)."""


def _validation_reason(
    exc: ValidationError, column_of: Callable[[tuple], str] | None = None
) -> str:
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


# --------------------------------------------------------------------------- applying


@dataclass
class _Job:
    line: int
    rows: int
    data: Any
    """A validated MemberIn or PurchaseIn."""
    outcome: str | None = None
    rejected: str | None = None
    new: bool = False
    """The pre-check saw no stored record for it (a member import can skip its comparison)."""


Apply = Callable[[AsyncSession, _Job], Awaitable[str]]


def _fatal(exc: BaseException) -> bool:
    """Errors that mean the database itself is gone: stop the import instead of rejecting rows."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, InterfaceError | OSError)


def _reason(exc: Exception, data: Any = None) -> str:
    """A rejection reason; a domain error naming a field gets the offending value added."""
    if isinstance(exc, DomainError):
        value = getattr(data, exc.field, None) if exc.field and data is not None else None
        if isinstance(value, str) and value and value not in exc.message:
            if exc.field in PHONE_COLUMNS:
                value = mask_phone(value)
            return f"{exc.message} {value!r}"
        return exc.message
    if isinstance(exc, ValidationError):
        return _validation_reason(exc)
    log.warning("unexpected %s while importing: %s", type(exc).__name__, exc)
    return f"unexpected error: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _attempt(
    sessions: async_sessionmaker[AsyncSession], jobs: list[_Job], apply: Apply, *, savepoints: bool
) -> bool:
    """Apply `jobs` in one transaction. Without savepoints any failure rolls the whole
    transaction back (returns False); with them a failing job is rejected alone."""
    for job in jobs:
        job.outcome = job.rejected = None
    try:
        async with sessions() as session, session.begin():
            for job in jobs:
                if not savepoints:
                    job.outcome = await apply(session, job)
                    continue
                try:
                    async with session.begin_nested():
                        job.outcome = await apply(session, job)
                except Exception as exc:
                    if _fatal(exc):
                        raise
                    job.outcome, job.rejected = None, _reason(exc, job.data)
        return True
    except Exception as exc:
        if _fatal(exc):
            raise
        log.debug("transaction of %d records failed: %s", len(jobs), exc)
        for job in jobs:
            job.outcome = None
            job.rejected = _reason(exc, job.data) if len(jobs) == 1 else None
        return False


async def _apply_batch(
    sessions: async_sessionmaker[AsyncSession], jobs: list[_Job], apply: Apply
) -> None:
    """One transaction for the batch; if anything fails, redo it with a savepoint per job;
    if even that transaction fails, one transaction per job."""
    if await _attempt(sessions, jobs, apply, savepoints=False):
        return
    if await _attempt(sessions, jobs, apply, savepoints=True):
        return
    for job in jobs:
        await _attempt(sessions, [job], apply, savepoints=False)


Prefilter = Callable[[list[_Job]], Awaitable[None]]


class _Batcher:
    """Collects validated jobs and applies them `size` at a time, recording the outcomes.

    `prefilter` may settle jobs before the transaction (set `outcome` or `rejected`):
    one query for the whole batch instead of one domain call per record."""

    def __init__(
        self, sessions, apply: Apply, summary: ImportSummary, size: int, prefilter: Prefilter
    ):
        self.sessions, self.apply, self.summary, self.size = sessions, apply, summary, size
        self.prefilter = prefilter
        self.jobs: list[_Job] = []
        self.on_done: Callable[[_Job], None] | None = None

    async def add(self, job: _Job) -> None:
        self.jobs.append(job)
        if len(self.jobs) >= self.size:
            await self.flush()

    async def flush(self) -> None:
        if not self.jobs:
            return
        jobs, self.jobs = self.jobs, []
        await self.prefilter(jobs)
        todo = [j for j in jobs if j.outcome is None and j.rejected is None]
        if todo:
            await _apply_batch(self.sessions, todo, self.apply)
        for job in jobs:
            if job.rejected is not None:
                self.summary.reject(job.line, job.rejected, job.rows)
            else:
                self.summary.add(job.outcome or "unknown")
            if self.on_done:
                self.on_done(job)


def _progress(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, unit="row", desc=desc, disable=None if enabled else True, leave=False)


# --------------------------------------------------------------------------- members


def _member_snapshot(member: Member, openids: list[str]) -> tuple:
    data = member.model_dump(exclude={"updated_at"})
    return tuple(sorted(data.items(), key=lambda kv: kv[0])) + (tuple(sorted(openids)),)


async def _openids(session: AsyncSession, member_id: int) -> list[str]:
    rows = await session.exec(
        select(Identity.address).where(
            Identity.member_id == member_id, Identity.channel == "wechat", Identity.active
        )
    )
    return list(rows.all())


async def _current_rows(
    session: AsyncSession, phones: list[str], tz: ZoneInfo
) -> dict[str, dict[str, Any]]:
    """The stored member sheet rows (as `member_row` writes them) of these phones."""
    if not phones:
        return {}
    members = (await session.exec(select(Member).where(col(Member.phone).in_(phones)))).all()
    if not members:
        return {}
    stores, assistants = await _code_maps(session)
    openids = await _openids_of(session, [m.id for m in members])
    rows = {}
    for m in members:
        row: dict[str, Any] = member_row(
            m, stores=stores, assistants=assistants, openid=openids.get(m.id, ""), tz=tz
        )
        row.update(birthday_leap_month=m.birthday_leap_month, address=m.address)
        rows[m.phone] = row
    return rows


def _same_member(data: MemberIn, row: dict[str, Any]) -> bool:
    """True if every field given in `data` already has that value in the stored `row`."""
    for name in data.model_fields_set:
        given, stored = getattr(data, name), row.get(name)
        if name in ("birthday", "wedding_anniversary"):
            same = bool(stored) and given is not None and parse_day(given) == parse_day(stored)
        elif name == "birthday_calendar":
            # The export leaves the calendar empty when there is no birthday.
            same = given == (stored or "solar")
        else:
            same = given == (stored if stored != "" else None)
        if not same:
            return False
    return True


async def import_members(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    path: str | Path,
    today: date,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    total_rows: int | None = None,
) -> ImportSummary:
    """Create or update members from a member sheet; identical rows change nothing."""
    path = Path(path)
    total = check_file(path, "members") if total_rows is None else total_rows
    summary = ImportSummary("members")

    async def apply(session: AsyncSession, job: _Job) -> str:
        data: MemberIn = job.data
        if job.new:
            _member, created = await upsert_member(
                session, rules=rules, tz=tz, data=data, today=today
            )
            return "created" if created else "updated"
        before = await session.exec(select(Member).where(Member.phone == data.phone))
        existing = before.first()
        snapshot = updated_at = None
        if existing is not None:
            snapshot = _member_snapshot(existing, await _openids(session, existing.id))
            updated_at = existing.updated_at
        member, created = await upsert_member(session, rules=rules, tz=tz, data=data, today=today)
        if created:
            return "created"
        await session.flush()
        after = _member_snapshot(member, await _openids(session, member.id))
        if after == snapshot:
            if member.updated_at != updated_at:
                member.updated_at = updated_at  # nothing changed: keep the old timestamp
                await session.flush()
            return "unchanged"
        return "updated"

    async def unchanged(jobs: list[_Job]) -> None:
        """Rows equal to what is stored are "unchanged" without a write (re-runs, and an
        export imported back, cost one query per batch)."""
        phones = Counter(job.data.phone for job in jobs)
        async with sessions() as session:
            current = await _current_rows(session, [p for p, n in phones.items() if n == 1], tz)
        for job in jobs:
            if phones[job.data.phone] > 1:
                continue
            row = current.get(job.data.phone)
            if row is None:
                job.new = True
            elif _same_member(job.data, row):
                job.outcome = "unchanged"

    batcher = _Batcher(sessions, apply, summary, batch_size, unchanged)
    with _progress(total, progress, "members") as bar:
        for row in _read_rows(path, known=EXPORT_COLUMNS, summary=summary):
            bar.update(1)
            cells = {k: v for k, v in row.cells.items() if k in MEMBER_COLUMNS}
            try:
                data = MemberIn(**cells)
            except ValidationError as exc:
                summary.reject(row.line, _validation_reason(exc))
                continue
            except DomainError as exc:
                summary.reject(row.line, exc.message)
                continue
            summary.records += 1
            await batcher.add(_Job(row.line, 1, data))
        await batcher.flush()
    return summary


# --------------------------------------------------------------------------- purchases


@dataclass
class _Receipt:
    receipt_no: str
    first: _Row
    rows: list[_Row] = field(default_factory=list)
    error: Rejection | None = None


def _group_receipts(rows: Iterator[_Row]) -> Iterator[_Receipt]:
    """Consecutive rows with the same receipt_no → one receipt."""
    current: _Receipt | None = None
    for row in rows:
        no = row.cells.get("receipt_no", "")
        if current is not None and no and no == current.receipt_no:
            current.rows.append(row)
            _check_consistent(current, row)
            continue
        if current is not None:
            yield current
        current = _Receipt(no, row, [row])
        if not no:
            current.error = Rejection(row.line, "receipt_no: missing")
    if current is not None:
        yield current


def _check_consistent(receipt: _Receipt, row: _Row) -> None:
    if receipt.error is not None:
        return
    for name in PURCHASE_FIELDS:
        first, this = receipt.first.cells.get(name), row.cells.get(name)
        if this is not None and first is not None and this != first:
            receipt.error = Rejection(
                row.line,
                f"{name} {this!r} differs from {first!r} on line {receipt.first.line} "
                f"(same receipt_no {receipt.receipt_no!r})",
            )
            return
        if this is not None and first is None:
            receipt.first.cells[name] = this


def _purchase_in(receipt: _Receipt) -> PurchaseIn:
    head = {k: v for k, v in receipt.first.cells.items() if k in PURCHASE_FIELDS}
    items = []
    for row in receipt.rows:
        item: dict[str, Any] = {ITEM_FIELDS[k]: v for k, v in row.cells.items() if k in ITEM_FIELDS}
        qty = ascii_int(item["qty"].strip(), max_digits=9) if "qty" in item else None
        if qty is not None:
            item["qty"] = qty  # ItemIn takes a strict int; CSV cells are text
        items.append(item)
    return PurchaseIn(**head, items=items)


def _purchase_reason(receipt: _Receipt, exc: ValidationError) -> Rejection:
    """All the receipt's errors, on the line of the first (an item's own line)."""
    errors = exc.errors()
    return Rejection(
        _error_line(receipt, tuple(errors[0]["loc"])),
        _validation_reason(exc, _purchase_column),
    )


def _is_item(loc: tuple) -> bool:
    return bool(loc) and loc[0] == "items" and len(loc) >= 2 and isinstance(loc[1], int)


def _error_line(receipt: _Receipt, loc: tuple) -> int:
    if _is_item(loc) and loc[1] < len(receipt.rows):
        return receipt.rows[loc[1]].line
    return receipt.first.line


def _purchase_column(loc: tuple) -> str:
    if _is_item(loc):
        sub = str(loc[2]) if len(loc) > 2 else "items"
        return "item_amount" if sub == "amount" else sub
    return ".".join(str(p) for p in loc)


async def _existing(session: AsyncSession, column, values: set[str]) -> set[str]:
    if not values:
        return set()
    return set((await session.exec(select(column).where(col(column).in_(values)))).all())


def _settle_purchases(sessions: async_sessionmaker[AsyncSession]) -> Prefilter:
    """Per batch, in four queries: receipts already recorded are "already"; unknown store,
    assistant or card codes are rejected before the transaction (with the messages
    `record_purchase` would give), so a typo does not make the batch run twice."""

    async def settle(jobs: list[_Job]) -> None:
        data = [job.data for job in jobs]
        async with sessions() as session:
            recorded = await _existing(session, Purchase.receipt_no, {d.receipt_no for d in data})
            stores = await _existing(session, Store.code, {d.store for d in data})
            assistants = await _existing(
                session, Assistant.code, {d.assistant for d in data if d.assistant}
            )
            cards = await _existing(
                session, Member.card_no, {d.card_no for d in data if d.card_no and not d.phone}
            )
        for job in jobs:
            d: PurchaseIn = job.data
            if d.receipt_no in recorded:
                job.outcome = "already"
            elif d.store not in stores:
                job.rejected = f"unknown store {d.store!r}"
            elif d.assistant and d.assistant not in assistants:
                job.rejected = f"unknown assistant {d.assistant!r}"
            elif not d.phone and d.card_no not in cards:
                job.rejected = f"unknown card number {d.card_no!r}"

    return settle


async def import_purchases(
    sessions: async_sessionmaker[AsyncSession],
    *,
    rules: LoyaltyRules,
    tz: ZoneInfo,
    path: str | Path,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    total_rows: int | None = None,
) -> ImportSummary:
    """Record the purchases of a one-row-per-item sheet; already recorded receipts are skipped."""
    path = Path(path)
    total = check_file(path, "purchases") if total_rows is None else total_rows
    summary = ImportSummary("purchases")
    seen: dict[str, int] = {}  # receipt_no → first line in this file
    preexisting: set[str] = set()  # receipts found already recorded (before this file)

    async def apply(session: AsyncSession, job: _Job) -> str:
        _purchase, created = await record_purchase(session, rules=rules, tz=tz, data=job.data)
        return "recorded" if created else "already"

    batcher = _Batcher(sessions, apply, summary, batch_size, _settle_purchases(sessions))

    def done(job: _Job) -> None:
        if job.outcome == "already":
            preexisting.add(job.data.receipt_no)

    batcher.on_done = done
    with _progress(total, progress, "purchases") as bar:
        rows = _read_rows(path, known=PURCHASE_COLUMNS, summary=summary)
        for receipt in _group_receipts(_counting(rows, bar)):
            summary.records += 1
            if receipt.error is not None:
                summary.reject(receipt.error.line, receipt.error.reason, len(receipt.rows))
                continue
            if receipt.receipt_no in seen:
                await batcher.flush()  # settle whether the earlier rows were already recorded
                if receipt.receipt_no in preexisting:
                    summary.add("already")
                    continue
                summary.reject(
                    receipt.first.line,
                    f"receipt_no {receipt.receipt_no!r} split across non-adjacent rows "
                    f"(first seen on line {seen[receipt.receipt_no]})",
                    len(receipt.rows),
                )
                continue
            seen[receipt.receipt_no] = receipt.first.line
            try:
                data = _purchase_in(receipt)
            except ValidationError as exc:
                rej = _purchase_reason(receipt, exc)
                summary.reject(rej.line, rej.reason, len(receipt.rows))
                continue
            await batcher.add(_Job(receipt.first.line, len(receipt.rows), data))
        await batcher.flush()
    return summary


def _counting(rows: Iterator[_Row], bar: tqdm) -> Iterator[_Row]:
    for row in rows:
        bar.update(1)
        yield row


# --------------------------------------------------------------------------- export


def _mmdd(year: int | None, month: int | None, day: int | None) -> str:
    if not month or not day:
        return ""
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


async def _code_maps(session: AsyncSession) -> tuple[dict[int, str], dict[int, str]]:
    stores = {i: c for i, c in (await session.exec(select(Store.id, Store.code))).all()}
    assistants = {i: c for i, c in (await session.exec(select(Assistant.id, Assistant.code))).all()}
    return stores, assistants


async def _openids_of(session: AsyncSession, member_ids: list[int]) -> dict[int, str]:
    """The active WeChat openid of each member (the newest, as the member view shows)."""
    idents = await session.exec(
        select(Identity.member_id, Identity.address)
        .where(
            col(Identity.member_id).in_(member_ids), Identity.channel == "wechat", Identity.active
        )
        .order_by(col(Identity.id).desc())
    )
    openids: dict[int, str] = {}
    for member_id, address in idents.all():
        openids.setdefault(member_id, address)
    return openids


async def _member_chunks(
    session: AsyncSession, chunk: int
) -> AsyncIterator[tuple[list[Member], dict[int, str]]]:
    """Members in id order, `chunk` at a time (keyset pagination), with their WeChat openids."""
    last = 0
    while True:
        result = await session.exec(
            select(Member).where(Member.id > last).order_by(Member.id).limit(chunk)
        )
        members = list(result.all())
        if not members:
            return
        ids = [m.id for m in members]
        yield members, await _openids_of(session, ids)
        session.expunge_all()
        last = ids[-1]


def member_row(
    member: Member, *, stores: dict[int, str], assistants: dict[int, str], openid: str, tz: ZoneInfo
) -> dict[str, str]:
    """One member sheet row, in the formats the member import reads back unchanged."""
    return {
        "phone": member.phone,
        "name": member.name or "",
        "gender": member.gender or "",
        "birthday": _mmdd(member.birthday_year, member.birthday_month, member.birthday_day),
        "birthday_calendar": member.birthday_calendar if member.birthday_month else "",
        "wedding_anniversary": _mmdd(member.wedding_year, member.wedding_month, member.wedding_day),
        "store": stores.get(member.store_id, "") if member.store_id else "",
        "assistant": assistants.get(member.assistant_id, "") if member.assistant_id else "",
        "card_no": member.card_no or "",
        "preferred_contact": member.preferred_contact or "",
        "wechat_openid": openid,
        "locale": member.locale or "",
        "points": str(member.points),
        "tier": member.tier or "",
        "cumulative_spend": f"{member.cumulative_spend:.2f}",
        "last_purchase": local_date(member.last_purchase_at, tz).isoformat()
        if member.last_purchase_at
        else "",
        "stopped": "true" if member.stopped else "false",
    }


async def export_members(
    sessions: async_sessionmaker[AsyncSession], *, out: TextIO, tz: ZoneInfo, chunk: int = 1000
) -> int:
    """Write the member sheet as CSV to `out` (opened with newline=""); return the row count.

    The caller chooses the encoding; the CLI writes UTF-8 with a BOM.
    """
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    async with sessions() as session:
        stores, assistants = await _code_maps(session)
        async for members, openids in _member_chunks(session, chunk):
            for m in members:
                writer.writerow(
                    member_row(
                        m, stores=stores, assistants=assistants, openid=openids.get(m.id, ""), tz=tz
                    )
                )
            count += len(members)
    return count
