"""Reading and checking real MedCalc-Bench rows (CSV, parquet or the Hugging Face hub).

Rows are plain `dict[str, str]` in the 14-column v1.0 schema, every value text
exactly as the CSV stores it.
"""
from __future__ import annotations

import csv
import math
import re
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from ehrmind.tasks.base import DataError
from ehrmind.tasks.medcalc.scoring import CALCULATORS, ParseError, parse_weeks_days, rule_for

COLUMNS = ("Row Number", "Calculator ID", "Calculator Name", "Category", "Output Type", "Note ID", "Note Type",
           "Patient Note", "Question", "Relevant Entities", "Ground Truth Answer", "Lower Limit", "Upper Limit",
           "Ground Truth Explanation")
DEFAULT_HUB_ID = "ncbi/MedCalc-Bench-v1.0"
_LOCAL_SUFFIXES = (".csv", ".parquet")


def is_local(source: str) -> bool:
    return source.lower().endswith(_LOCAL_SUFFIXES) or Path(source).exists()


def _text(value: Any) -> str:
    """A cell as CSV text (parquet / hub cells may be ints or floats)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_rows(source: str = DEFAULT_HUB_ID, split: str = "test", revision: str | None = None) -> list[dict[str, str]]:
    """Rows of a local .csv/.parquet file, or of a hub dataset split."""
    if is_local(source):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{source}: file not found")
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq
            records = pq.read_table(path).to_pylist()
            return [{str(k): _text(v) for k, v in rec.items()} for rec in records]
        if path.suffix.lower() != ".csv":
            raise DataError(f"{source}: expected a .csv or .parquet file")
        # newline="" keeps line breaks inside quoted notes and explanations intact.
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    from datasets import load_dataset
    ds = load_dataset(source, split=split, revision=revision)
    return [{str(k): _text(v) for k, v in rec.items()} for rec in ds]


def write_csv(rows: Iterable[dict[str, str]], path: str | Path) -> Path:
    """Write rows as a MedCalc-Bench CSV: the columns the rows have, the 14 known
    ones first in their order (a column left out stays out, for test fixtures)."""
    rows = list(rows)
    present = dict.fromkeys(k for row in rows for k in row)
    fields = [c for c in COLUMNS if c in present] + [k for k in present if k not in COLUMNS]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------- validation
_DATE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*")


def _strict_number(text: str) -> float:
    x = float(text.strip())  # ValueError on anything but a plain number
    if not math.isfinite(x):
        raise ValueError(text)
    return x


def _strict_date(text: str) -> date:
    m = _DATE.fullmatch(text)
    if m is None:
        raise ValueError(text)
    mo, d, y = (int(g) for g in m.groups())
    return date(y, mo, d)


_CHECKS = {"decimal": (_strict_number, "a number"), "integer": (_strict_number, "a number"),
           "date": (_strict_date, "a date m/d/Y"), "weeks_days": (parse_weeks_days, "a (weeks, days) tuple")}


def validate_rows(rows: list[dict[str, str]], origin: str) -> None:
    """Raise DataError naming origin, 1-based data row and column on the first bad cell."""
    if not rows:
        raise DataError(f"{origin}: no data rows")
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        def fail(column: str, why: str) -> DataError:
            return DataError(f"{origin}: row {i}, column '{column}': {why}")

        for col in COLUMNS:
            if col not in row:
                raise fail(col, "missing column")
            if row[col] is None:  # csv.DictReader: the line has too few fields
                raise fail(col, "missing value (too few fields on this line)")
        number = row["Row Number"].strip()
        if not number.isdigit():
            raise fail("Row Number", f"{number!r} is not a whole number")
        if number in seen:
            raise fail("Row Number", f"duplicate of row {seen[number]}")
        seen[number] = i
        cid = row["Calculator ID"].strip()
        if not cid.isdigit():
            raise fail("Calculator ID", f"{cid!r} is not a whole number")
        if int(cid) not in CALCULATORS:
            raise fail("Calculator ID", f"unknown calculator id {cid} (no MedCalc-Bench v1.0 scoring rule)")
        expected = CALCULATORS[int(cid)][2]
        if row["Output Type"].strip() != expected:
            raise fail("Output Type", f"{row['Output Type']!r}, expected {expected!r} for calculator {cid}")
        for col in ("Patient Note", "Question"):
            if not row[col].strip():
                raise fail(col, "empty")
        check, kind = _CHECKS[rule_for(int(cid))]
        for col in ("Ground Truth Answer", "Lower Limit", "Upper Limit"):
            try:
                check(row[col])
            except (ValueError, ParseError):
                raise fail(col, f"cannot read {row[col][:40]!r} as {kind}") from None
