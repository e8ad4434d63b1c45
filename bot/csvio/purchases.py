"""`import_purchases`: record the purchases of a one-row-per-item sheet (consecutive rows
sharing a `receipt_no` are one purchase); receipts already recorded are skipped.

Returns load from the same sheet: a row with a `return_no` is a returned item of the
sale `receipt_no` (its `sku`, `qty`, `item_amount`, and `at`, the time of the return);
consecutive rows sharing a `return_no` are one return, recorded as `POST /api/returns`
records it (`models.returns.record_return`; a return already recorded is skipped). The
sale must be recorded before its return: earlier in the file or before the run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from bot.csvio.batches import DEFAULT_BATCH, Batcher, Job, Prefilter, progress_bar
from bot.csvio.reading import (
    ITEM_FIELDS,
    PURCHASE_COLUMNS,
    PURCHASE_FIELDS,
    RETURN_FIELD,
    Row,
    check_file,
    read_rows,
)
from bot.csvio.report import ImportSummary, Rejection, validation_reason
from models.bulk.pipeline import Turn
from models.bulk.receipts import record_receipts
from models.bulk.state import existing, shops
from models.bulk.stats import PURCHASE_TABLES
from models.purchases.input import PurchaseIn
from models.purchases.record import record_purchase
from models.returns import ReturnIn, record_return
from models.rules import LoyaltyRules
from models.strict import ascii_int
from models.tables.members import Member
from models.tables.purchases import Purchase


@dataclass
class _Receipt:
    receipt_no: str
    first: Row
    return_no: str
    rows: list[Row] = field(default_factory=list)
    error: Rejection | None = None


def _group_receipts(rows: Iterator[Row]) -> Iterator[_Receipt]:
    """Consecutive rows with the same receipt_no → one receipt."""
    current: _Receipt | None = None
    for row in rows:
        no = row.cells.get("receipt_no", "")
        back = row.cells.get(RETURN_FIELD, "")
        same = current is not None and no and (no, back) == (current.receipt_no, current.return_no)
        if same:
            current.rows.append(row)
            _check_consistent(current, row)
            continue
        if current is not None:
            yield current
        current = _Receipt(no, row, back, [row])
        if not no:
            current.error = Rejection(row.line, "receipt_no: missing")
    if current is not None:
        yield current


def _check_consistent(receipt: _Receipt, row: Row) -> None:
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


def _return_in(receipt: _Receipt) -> ReturnIn:
    items = []
    for row in receipt.rows:
        item: dict[str, Any] = {"sku": row.cells.get("sku", "")}
        item["amount"] = row.cells.get("item_amount")
        qty = ascii_int(row.cells.get("qty", "1").strip(), max_digits=9)
        item["qty"] = row.cells.get("qty") if qty is None else qty
        items.append(item)
    head = receipt.first.cells
    return ReturnIn(
        return_no=receipt.return_no, receipt_no=receipt.receipt_no, at=head.get("at"), items=items
    )


def _purchase_reason(receipt: _Receipt, exc: ValidationError) -> Rejection:
    """All the receipt's errors, on the line of the first (an item's own line)."""
    errors = exc.errors()
    return Rejection(
        _error_line(receipt, tuple(errors[0]["loc"])),
        validation_reason(exc, _purchase_column),
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


def _settle_purchases(sessions: async_sessionmaker[AsyncSession]) -> Prefilter:
    """Per batch, in two or three queries: receipts already recorded are "already"; unknown store,
    assistant or card codes are rejected before the transaction (with the messages
    `record_purchase` would give), so a typo does not make the batch run twice."""

    async def settle(jobs: list[Job]) -> None:
        data = [job.data for job in jobs if isinstance(job.data, PurchaseIn)]
        async with sessions() as session:
            recorded = await existing(session, Purchase.receipt_no, {d.receipt_no for d in data})
            stores, assistants = await shops(session)
            cards = await existing(
                session, Member.card_no, {d.card_no for d in data if d.card_no and not d.phone}
            )
        for job in jobs:
            d = job.data
            if isinstance(d, ReturnIn):
                continue  # record_return settles it in the transaction
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
    bulk: bool = True,
) -> ImportSummary:
    """Record the purchases of a one-row-per-item sheet; already recorded receipts are skipped.

    `bulk`: record each batch set-based (`models.bulk.receipts`), the same rows as one by
    one (`record_purchase` / `record_return` per receipt, with `bulk=False`)."""
    path = Path(path)
    total = check_file(path, "purchases") if total_rows is None else total_rows
    summary = ImportSummary("purchases")
    seen: dict[str, int] = {}  # receipt_no → first line in this file
    preexisting: set[str] = set()  # receipts found already recorded (before this file)

    async def apply(session: AsyncSession, job: Job) -> str:
        if isinstance(job.data, ReturnIn):
            _return, created = await record_return(session, rules=rules, tz=tz, data=job.data)
            return "returned" if created else "already"
        _purchase, created = await record_purchase(session, rules=rules, tz=tz, data=job.data)
        return "recorded" if created else "already"

    async def in_bulk(session: AsyncSession, jobs: list[Job], turn: Turn | None) -> list[Job]:
        left = await record_receipts(
            session, rules=rules, tz=tz, records=[j.data for j in jobs], turn=turn
        )
        rest = {id(jobs[i]) for i in left}
        for job in jobs:
            if id(job) not in rest:
                job.outcome = "recorded"
        return [jobs[i] for i in left]

    batcher = Batcher(
        sessions,
        apply,
        summary,
        batch_size,
        _settle_purchases(sessions),
        in_bulk if bulk else None,
        tables=PURCHASE_TABLES,
    )

    def done(job: Job) -> None:
        if job.outcome == "already" and isinstance(job.data, PurchaseIn):
            preexisting.add(job.data.receipt_no)

    batcher.on_done = done
    with progress_bar(total, progress, "purchases") as bar:
        rows = read_rows(path, known=PURCHASE_COLUMNS, summary=summary)
        for receipt in _group_receipts(_counting(rows, bar)):
            summary.records += 1
            if receipt.error is not None:
                summary.reject(receipt.error.line, receipt.error.reason, len(receipt.rows))
                continue
            if receipt.return_no:
                try:
                    back = _return_in(receipt)
                except ValidationError as exc:
                    rej = _purchase_reason(receipt, exc)
                    summary.reject(rej.line, rej.reason, len(receipt.rows))
                    continue
                await batcher.add(Job(receipt.first.line, len(receipt.rows), back))
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
            await batcher.add(Job(receipt.first.line, len(receipt.rows), data))
        await batcher.flush()
    return summary


def _counting(rows: Iterator[Row], bar: tqdm) -> Iterator[Row]:
    for row in rows:
        bar.update(1)
        yield row
