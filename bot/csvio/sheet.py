"""Where a CSV sheet is written: standard output, or a file written atomically.

Both are UTF-8 with a BOM (Excel then reads Chinese correctly) and no newline
translation (the csv module writes its own line ends). Used by `memberbot export`
and `memberbot report`.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from bot.csvio.report import CsvFileError

ENCODING = "utf-8-sig"


@contextmanager
def sheet_stdout() -> Iterator[TextIO]:
    """Standard output for a CSV sheet; detached afterwards, stdout stays usable."""
    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding=ENCODING, newline="")
    try:
        yield out
    finally:
        out.flush()
        out.detach()


@contextmanager
def sheet_file(target: str | Path) -> Iterator[TextIO]:
    """A CSV sheet written to `target` atomically: under a temporary name beside it
    (`.NAME.part`), renamed over `target` only when the block ends without an error —
    never a half-written sheet; on any error the temporary file is removed and
    `target` is left as it was. A file that cannot be created, written or renamed →
    CsvFileError("cannot write TARGET: reason")."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with tmp.open("w", encoding=ENCODING, newline="") as fh:
            yield fh
        tmp.replace(target)
    except OSError as exc:
        raise CsvFileError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
