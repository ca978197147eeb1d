"""EHRSHOT data on disk and in memory: MEDS parquet and the FEMR CSV release.

Both readers return a `Dataset` (events per subject, labels per subtask, code
descriptions, optional split file) and raise `DataError` naming file, row and
field. Rows are counted from 1, the header excluded. The writers produce the
same formats for tests and fixtures.

MEDS (`path`): data/**/*.parquet (subject_id, time, code, numeric_value; optional
unit, text_value), labels/<subtask>/*.parquet (subject_id, prediction_time,
boolean_value), optional metadata/codes.parquet (code, description) and
metadata/subject_splits.parquet (subject_id, split in train/tuning/held_out).

FEMR CSV (EHRSHOT release): data/ehrshot.csv (patient_id, start, end, code, value,
unit, visit_id, omop_table), benchmark/<subtask>/labeled_patients.csv (patient_id,
prediction_time, value, label_type) and splits/person_id_map.csv (omop_person_id,
split in train/val/test). Events are placed at `start`; `end`, `visit_id` and
`omop_table` are not needed (a visit's end may lie after the prediction time).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from ehrmind.tasks.base import DataError

STATIC_PREFIXES = ("GENDER/", "RACE/", "ETHNICITY/")   # compared upper-case: FEMR writes Gender/F
BIRTH_CODES = ("MEDS_BIRTH", "SNOMED/3950001")        # MEDS, FEMR/OMOP birth event
MEDS_SPLITS = ("train", "tuning", "held_out")
FEMR_SPLITS = {"train": "train", "val": "tuning", "test": "held_out"}
MEDS_EVENT_COLUMNS = ("subject_id", "time", "code", "numeric_value")
MEDS_LABEL_COLUMNS = ("subject_id", "prediction_time", "boolean_value")
FEMR_EVENT_COLUMNS = ("patient_id", "start", "end", "code", "value", "unit", "visit_id", "omop_table")
FEMR_REQUIRED = ("patient_id", "start", "code", "value", "unit")   # the rest is written, never read
FEMR_LABEL_COLUMNS = ("patient_id", "prediction_time", "value", "label_type")
_OMOP_TABLE = {"conditions": "condition_occurrence", "procedures": "procedure_occurrence",
               "drugs": "drug_exposure", "labs": "measurement", "visits": "visit_occurrence"}


@dataclass(frozen=True)
class Event:
    time: datetime | None          # None only for static codes (GENDER/, RACE/, ETHNICITY/)
    code: str
    numeric_value: float | None = None
    unit: str | None = None
    text_value: str | None = None


@dataclass(frozen=True)
class Label:
    subject_id: int
    prediction_time: datetime
    value: bool


@dataclass
class Dataset:
    events: dict[int, list[Event]]                       # subject_id -> events, time order
    labels: dict[str, list[Label]]                       # subtask -> labels
    codes: dict[str, str] = field(default_factory=dict)  # code -> description
    splits: dict[int, str] | None = None                 # subject_id -> MEDS split name


def is_static(code: str) -> bool:
    return code.upper().startswith(STATIC_PREFIXES)


def _fail(path: Path | str, row: int | str, name: str, expected: str, got: Any) -> DataError:
    where = f"row {row}" if isinstance(row, int) else row
    return DataError(f"{path}: {where}, field '{name}': expected {expected}, got {got!r}")


def _require_columns(path: Path, present: Iterable[str], required: Iterable[str]) -> None:
    have = set(present)
    for name in required:
        if name not in have:
            raise _fail(path, "header row", name, f"a column named {name!r} (required: {', '.join(required)})",
                        "no such column")


def _as_datetime(value: Any) -> datetime | None:
    """A naive datetime (UTC when the source is tz-aware), or None when `value` is not a time."""
    if hasattr(value, "to_pydatetime"):   # pandas.Timestamp from timestamp[ns] columns
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


def _as_subject(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------ MEDS
def _parquet_files(folder: Path, what: str) -> list[Path]:
    files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder}: no *.parquet files ({what})")
    return files


def _columns(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, list]:
    names = pq.read_schema(path).names
    _require_columns(path, names, required)
    wanted = list(required) + [c for c in optional if c in names]
    table = pq.read_table(path, columns=wanted)
    return {name: table.column(name).to_pylist() for name in wanted}


def read_meds_labels(root: Path, subtask: str) -> list[Label]:
    out = []
    for path in _parquet_files(root / "labels" / subtask, f"labels of subtask {subtask}"):
        cols = _columns(path, MEDS_LABEL_COLUMNS)
        for i, (sid, when, value) in enumerate(zip(*(cols[c] for c in MEDS_LABEL_COLUMNS)), start=1):
            if _as_subject(sid) is None:
                raise _fail(path, i, "subject_id", "an integer", sid)
            if _as_datetime(when) is None:
                raise _fail(path, i, "prediction_time", "a timestamp", when)
            if not isinstance(value, bool):
                raise _fail(path, i, "boolean_value", "a boolean (true/false)", value)
            out.append(Label(sid, _as_datetime(when), value))
    return out


def read_meds(root: str | Path, subtasks: Iterable[str]) -> Dataset:
    """Labels of `subtasks` and the events of the labelled subjects."""
    root = Path(root)
    labels = {s: read_meds_labels(root, s) for s in subtasks}
    wanted = {lab.subject_id for labs in labels.values() for lab in labs}
    events: dict[int, list[Event]] = {}
    for path in _parquet_files(root / "data", "MEDS events"):
        cols = _columns(path, MEDS_EVENT_COLUMNS, ("unit", "text_value"))
        n = len(cols["code"])
        units, texts = cols.get("unit", [None] * n), cols.get("text_value", [None] * n)
        rows = zip(cols["subject_id"], cols["time"], cols["code"], cols["numeric_value"], units, texts)
        for i, (sid, when, code, value, unit, text) in enumerate(rows, start=1):
            if _as_subject(sid) is None:
                raise _fail(path, i, "subject_id", "an integer", sid)
            if not isinstance(code, str) or not code:
                raise _fail(path, i, "code", "a non-empty string", code)
            time = _as_datetime(when)
            if time is None and (when is not None or not is_static(code)):
                raise _fail(path, i, "time", f"a timestamp (null only for static codes {', '.join(STATIC_PREFIXES)}) "
                            f"for code {code!r}", when)
            if value is not None and not _is_number(value):
                raise _fail(path, i, "numeric_value", "a number or null", value)
            if sid in wanted:
                number = None if value is None or math.isnan(value) else float(value)
                events.setdefault(sid, []).append(Event(time, code, number, unit or None, text or None))
    _check_known(labels, events, root / "labels")
    codes_path = root / "metadata" / "codes.parquet"
    splits_path = root / "metadata" / "subject_splits.parquet"
    return Dataset(_sorted(events), labels, read_codes(codes_path) if codes_path.exists() else {},
                   _read_meds_splits(splits_path) if splits_path.exists() else None)


def read_codes(path: str | Path) -> dict[str, str]:
    """code -> description from a parquet or CSV table with columns code, description."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            _require_columns(path, reader.fieldnames or (), ("code", "description"))
            pairs = [(r["code"], r["description"]) for r in reader]
    else:
        cols = _columns(path, ("code", "description"))
        pairs = list(zip(cols["code"], cols["description"]))
    return {c: d.strip() for c, d in pairs if c and isinstance(d, str) and d.strip()}


def _read_meds_splits(path: Path) -> dict[int, str]:
    cols = _columns(path, ("subject_id", "split"))
    out = {}
    for i, (sid, split) in enumerate(zip(cols["subject_id"], cols["split"]), start=1):
        if _as_subject(sid) is None:
            raise _fail(path, i, "subject_id", "an integer", sid)
        if split not in MEDS_SPLITS:
            raise _fail(path, i, "split", f"one of {', '.join(MEDS_SPLITS)}", split)
        out[sid] = split
    return out


def _check_known(labels: Mapping[str, list[Label]], events: Mapping[int, list[Event]], where: Path) -> None:
    for subtask, labs in labels.items():
        for i, lab in enumerate(labs, start=1):
            if lab.subject_id not in events:
                raise DataError(f"{where / subtask}: label row {i}, field 'subject_id': expected a subject with "
                                f"events in the data, got unknown subject {lab.subject_id}")


def _sorted(events: dict[int, list[Event]]) -> dict[int, list[Event]]:
    # static events (no time) first; stable otherwise
    return {sid: sorted(evs, key=lambda e: (e.time is not None, e.time or datetime.min))
            for sid, evs in sorted(events.items())}


def write_meds(root: str | Path, events: Mapping[int, list[Event]], labels: Mapping[str, list[Label]],
               codes: Mapping[str, str], splits: Mapping[int, str] | None = None) -> None:
    """Write a MEDS dataset root (numeric_value as float64 so values round-trip exactly)."""
    root = Path(root)
    rows = [(sid, e) for sid in sorted(events) for e in events[sid]]
    table = pa.table({
        "subject_id": pa.array([sid for sid, _ in rows], pa.int64()),
        "time": pa.array([e.time for _, e in rows], pa.timestamp("us")),
        "code": pa.array([e.code for _, e in rows], pa.string()),
        "numeric_value": pa.array([e.numeric_value for _, e in rows], pa.float64()),
        "unit": pa.array([e.unit for _, e in rows], pa.string()),
        "text_value": pa.array([e.text_value for _, e in rows], pa.string()),
    })
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "0.parquet")
    for subtask, labs in labels.items():
        (root / "labels" / subtask).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "subject_id": pa.array([lab.subject_id for lab in labs], pa.int64()),
            "prediction_time": pa.array([lab.prediction_time for lab in labs], pa.timestamp("us")),
            "boolean_value": pa.array([lab.value for lab in labs], pa.bool_()),
        }), root / "labels" / subtask / "0.parquet")
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"code": pa.array(list(codes), pa.string()),
                             "description": pa.array(list(codes.values()), pa.string())}),
                   root / "metadata" / "codes.parquet")
    if splits is not None:
        pq.write_table(pa.table({"subject_id": pa.array(list(splits), pa.int64()),
                                 "split": pa.array(list(splits.values()), pa.string())}),
                       root / "metadata" / "subject_splits.parquet")


# ------------------------------------------------------------------ FEMR CSV
def _parse_time(text: str) -> datetime | None:
    try:
        return _as_datetime(datetime.fromisoformat(text.strip()))
    except ValueError:
        return None


def _read_csv(path: Path, required: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        _require_columns(path, reader.fieldnames or (), required)
        yield from enumerate(reader, start=1)


def read_femr_labels(labels_path: Path, subtask: str) -> list[Label]:
    path = labels_path / subtask / "labeled_patients.csv"
    out = []
    for i, row in _read_csv(path, FEMR_LABEL_COLUMNS):
        sid, when, value = row["patient_id"].strip(), row["prediction_time"], row["value"].strip().lower()
        if not sid.lstrip("-").isdigit():
            raise _fail(path, i, "patient_id", "an integer", row["patient_id"])
        if _parse_time(when) is None:
            raise _fail(path, i, "prediction_time", "an ISO date-time", when)
        if value not in ("true", "false"):
            raise _fail(path, i, "value", "a boolean (True/False)", row["value"])
        out.append(Label(int(sid), _parse_time(when), value == "true"))
    return out


def read_femr_csv(csv_path: str | Path, labels_path: str | Path, subtasks: Iterable[str],
                  codes_path: str | Path | None = None, splits_path: str | Path | None = None) -> Dataset:
    """The EHRSHOT release's event CSV and label folder, restricted to labelled patients."""
    csv_path, labels_path = Path(csv_path), Path(labels_path)
    labels = {s: read_femr_labels(labels_path, s) for s in subtasks}
    wanted = {lab.subject_id for labs in labels.values() for lab in labs}
    events: dict[int, list[Event]] = {}
    for i, row in _read_csv(csv_path, FEMR_REQUIRED):
        sid, code, start = row["patient_id"].strip(), row["code"].strip(), row["start"].strip()
        if not sid.lstrip("-").isdigit():
            raise _fail(csv_path, i, "patient_id", "an integer", row["patient_id"])
        if not code:
            raise _fail(csv_path, i, "code", "a non-empty code", row["code"])
        time = _parse_time(start) if start else None
        if time is None and (start or not is_static(code)):
            raise _fail(csv_path, i, "start", "an ISO date-time like 2019-03-04 10:00:00", row["start"])
        if int(sid) in wanted:
            number, text = _femr_value(row["value"])
            events.setdefault(int(sid), []).append(Event(time, code, number, row["unit"].strip() or None, text))
    _check_known(labels, events, labels_path)
    return Dataset(_sorted(events), labels, read_codes(codes_path) if codes_path else {},
                   _read_femr_splits(Path(splits_path)) if splits_path else None)


def _femr_value(text: str) -> tuple[float | None, str | None]:
    """(numeric_value, text_value) of a FEMR `value` cell."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return None, text or None
    return (None, None) if math.isnan(number) else (number, None)


def _read_femr_splits(path: Path) -> dict[int, str]:
    out = {}
    for i, row in _read_csv(path, ("omop_person_id", "split")):
        sid, split = row["omop_person_id"].strip(), row["split"].strip()
        if not sid.lstrip("-").isdigit():
            raise _fail(path, i, "omop_person_id", "an integer", row["omop_person_id"])
        if split not in FEMR_SPLITS:
            raise _fail(path, i, "split", f"one of {', '.join(FEMR_SPLITS)}", row["split"])
        out[int(sid)] = FEMR_SPLITS[split]
    return out


def write_femr_csv(csv_path: str | Path, labels_path: str | Path, events: Mapping[int, list[Event]],
                   labels: Mapping[str, list[Label]], splits: Mapping[int, str] | None = None,
                   splits_path: str | Path | None = None) -> None:
    """Write the event CSV, <labels_path>/<subtask>/labeled_patients.csv and, given
    `splits` (MEDS split names) and `splits_path`, a person_id_map.csv."""
    from ehrmind.tasks.ehrshot.serialize import kind_of   # serialize imports this module

    csv_path, labels_path = Path(csv_path), Path(labels_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FEMR_EVENT_COLUMNS)
        for sid in sorted(events):
            for e in events[sid]:
                value = repr(e.numeric_value) if e.numeric_value is not None else (e.text_value or "")
                table = "person" if e.time is None or e.code in BIRTH_CODES else _OMOP_TABLE.get(kind_of(e) or "", "observation")
                w.writerow([sid, e.time.isoformat(sep=" ") if e.time else "", "", e.code, value, e.unit or "", "", table])
    for subtask, labs in labels.items():
        (labels_path / subtask).mkdir(parents=True, exist_ok=True)
        with (labels_path / subtask / "labeled_patients.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(FEMR_LABEL_COLUMNS)
            for lab in labs:
                w.writerow([lab.subject_id, lab.prediction_time.isoformat(), str(lab.value).lower(), "boolean"])
    if splits is not None and splits_path is not None:
        femr_name = {meds: femr for femr, meds in FEMR_SPLITS.items()}
        Path(splits_path).parent.mkdir(parents=True, exist_ok=True)
        with Path(splits_path).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("omop_person_id", "split"))
            w.writerows((sid, femr_name[split]) for sid, split in splits.items())
