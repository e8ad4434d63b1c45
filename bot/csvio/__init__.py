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

The modules, in the order a row meets them (import from the defining module; this
package re-exports nothing):

- `reading.py` — the sheets' columns, `check_file` (UTF-8, header) and the row reader;
- `report.py` — `CsvFileError`, the per-row `Rejection` and reasons, `ImportSummary`;
- `batches.py` — validated records applied `batch_size` per transaction, set-based
  through `models.bulk` unless `--one-by-one` (speed notes there);
- `members.py` — `import_members`; `purchases.py` — `import_purchases`;
- `export.py` — `export_members` and the sheet row `member_row`;
- `sheet.py` — where a sheet is written: standard output, or a file written atomically
  (`memberbot export` and `memberbot report` both).
"""
