"""Structured-EHR data on disk: the raw TJH release (xlsx) and the "formatted EHR" long table.

Both readers return a DataFrame in the formatted layout (one row per patient per record,
FIXED columns first, then one column per feature) and raise `DataError` naming the file,
the row (counted from 1, the header excluded) and the column. `prepare` then applies the
pyehr/ClinicRealm preprocessing and `to_records` cuts each patient's record for a prompt.

Raw TJH (/work/shared/reference/tjh_format.md): one sheet, 81 columns. PATIENT_ID is written
on a patient's first row only and is forward-filled. RE_DATE, Admission time and Discharge
time are Excel serial date-times (days since 1899-12-30; a date-formatted cell, which
openpyxl returns as a datetime, is accepted too). Header names are stripped (three carry a
trailing space). gender 1 male / 2 female becomes Sex 1 / 0. The constant column
`2019-nCoV nucleic acid detection` is dropped, leaving 73 labs. Age, gender, the two times
and outcome may be left empty on a patient's later rows (they are per patient); two
different values for one patient are an error. Rows without RE_DATE are dropped, as the
pyehr preprocessing does. TJH has no readmission label (Readmission is left empty).

Formatted table (CSV or parquet): PatientID, RecordTime, AdmissionTime, DischargeTime,
Outcome, LOS, Readmission, Sex, Age, then feature columns. Times are ISO date-times in CSV,
timestamps in parquet. Outcome 0/1; Readmission 0/1 or empty; Sex 1 male / 0 female; Age in
years; features numbers or empty. Outcome, Readmission, Sex, Age and AdmissionTime are per
patient and must not change between a patient's rows.

`prepare` (the convention): negative feature values become missing; rows of the same
calendar day are merged (feature and LOS means over the non-missing values; RecordTime
becomes that day's midnight); rows are sorted by patient and day.
`to_records`: a patient's visits, optionally only those within `observation_days` of the
admission day, and only patients with at least 2 such visits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ehrmind.tasks.base import DataError
from ehrmind.tasks.ehr.features import TJH_LABS

FIXED = ("PatientID", "RecordTime", "AdmissionTime", "DischargeTime", "Outcome", "LOS", "Readmission", "Sex", "Age")
TIMES = ("RecordTime", "AdmissionTime", "DischargeTime")
PER_PATIENT = ("AdmissionTime", "DischargeTime", "Outcome", "Readmission", "Sex", "Age")

TJH_FIXED = ("PATIENT_ID", "RE_DATE", "age", "gender", "Admission time", "Discharge time", "outcome")
TJH_DROPPED = "2019-nCoV nucleic acid detection"
TJH_TRAILING_SPACE = ("Red blood cell distribution width", "platelet large cell ratio", "mean corpuscular hemoglobin")
# The release's 81 header cells, in order, trailing spaces included.
TJH_HEADER = (*TJH_FIXED, *[
    name + (" " if name in TJH_TRAILING_SPACE else "") for name in
    TJH_LABS[:TJH_LABS.index("basophil count(#)") + 1] + (TJH_DROPPED,) + TJH_LABS[TJH_LABS.index("basophil count(#)") + 1:]])
EXCEL_EPOCH = datetime(1899, 12, 30)
_MISSING = ("", "nan", "NaN", "NA", "N/A", "null", "None")


@dataclass(frozen=True)
class Record:
    """One patient's record up to the prediction point (the last visit shown)."""
    patient_id: str
    sex: int                                  # 1 male, 0 female
    age: float                                # years
    days: tuple[int, ...]                     # each visit's day, counted from the admission day (0)
    features: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]     # visit x feature, NaN where missing
    outcome: int                              # in-hospital death
    readmission: int | None                   # readmitted or died within 30 days of discharge; None: not recorded

    def label(self, target: str) -> int:
        y = self.outcome if target == "outcome" else self.readmission
        if y is None:
            raise DataError(f"patient {self.patient_id}: no {target} label")
        return int(y)


def _fail(path: Path | str, row: int | str, column: str, expected: str, got: Any) -> DataError:
    where = f"row {row}" if isinstance(row, (int, np.integer)) else row
    return DataError(f"{path}: {where}, column '{column}': expected {expected}, got {got!r}")


# ------------------------------------------------------------------ formatted table
def read_formatted(path: str | Path) -> pd.DataFrame:
    """A formatted-EHR table (.csv or .parquet), validated, rows as in the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".parquet":
        raw = pd.read_parquet(path)
    elif path.suffix == ".csv":
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        raise DataError(f"{path}: expected a .csv or .parquet file")
    for name in FIXED:
        if name not in raw.columns:
            raise _fail(path, "header row", name, f"a column named {name!r} (required: {', '.join(FIXED)})",
                        "no such column")
    features = [c for c in raw.columns if c not in FIXED]
    out = pd.DataFrame({"PatientID": _ids(raw["PatientID"], path, "PatientID")})
    for name in TIMES:
        out[name] = _times(raw[name], path, name)
    out["Outcome"] = _numbers(raw["Outcome"], path, "Outcome", required=True, allowed=(0, 1))
    out["LOS"] = _numbers(raw["LOS"], path, "LOS")
    out["Readmission"] = _numbers(raw["Readmission"], path, "Readmission", allowed=(0, 1))
    out["Sex"] = _numbers(raw["Sex"], path, "Sex", required=True, allowed=(0, 1))
    out["Age"] = _numbers(raw["Age"], path, "Age", required=True, low=0)
    for name in features:
        out[name] = _numbers(raw[name], path, name)
    _check_per_patient(out, path)
    return out


def _first_bad(mask: pd.Series) -> int | None:
    bad = np.flatnonzero(mask.to_numpy())
    return int(bad[0]) if bad.size else None


def _is_missing(col: pd.Series) -> pd.Series:
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        return col.isna() | col.astype(str).str.strip().isin(_MISSING)
    return col.isna()


def _ids(col: pd.Series, path: Path, name: str) -> pd.Series:
    missing = _is_missing(col)
    if (i := _first_bad(missing)) is not None:
        raise _fail(path, i + 1, name, "a patient id", col.iloc[i])
    if pd.api.types.is_float_dtype(col) and (col % 1 == 0).all():
        col = col.astype("int64")
    return col.astype(str).str.strip()


def _times(col: pd.Series, path: Path, name: str) -> pd.Series:
    missing = _is_missing(col)
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col.dt.tz_convert("UTC").dt.tz_localize(None) if col.dt.tz is not None else col
    else:
        parsed = pd.to_datetime(col.where(~missing).astype(object), errors="coerce", format="ISO8601")
    if (i := _first_bad(missing | parsed.isna())) is not None:
        raise _fail(path, i + 1, name, "an ISO date-time like 2020-01-31 01:09:00", col.iloc[i])
    return parsed.astype("datetime64[ns]")


def _numbers(col: pd.Series, path: Path, name: str, required: bool = False,
             allowed: tuple[float, ...] | None = None, low: float | None = None) -> pd.Series:
    missing = _is_missing(col)
    values = pd.to_numeric(col.where(~missing), errors="coerce").astype("float64")
    bad = (~missing & values.isna()) | ~np.isfinite(values.fillna(0))
    what = "a number" + (" or empty" if not required else "")
    if allowed is not None:
        bad |= ~missing & ~values.isin(allowed)
        what = " or ".join(f"{a:g}" for a in allowed) + (" or empty" if not required else "")
    if low is not None:
        bad |= ~missing & (values < low)
        what += f" >= {low:g}"
    if required:
        bad |= missing
    if (i := _first_bad(bad)) is not None:
        raise _fail(path, i + 1, name, what, col.iloc[i])
    return values


def _check_per_patient(df: pd.DataFrame, path: Path, columns: Sequence[str] = PER_PATIENT,
                       rows: Sequence[int] | None = None, names: dict[str, str] | None = None) -> None:
    """Per-patient columns hold one value per patient (missing values aside). `rows` gives each
    row's number in the file, `names` each column's name there (default: as in `df`)."""
    for name in columns:
        col = df[name]
        first = col.groupby(df["PatientID"], sort=False).transform("first")
        differs = col.notna() & first.notna() & (col != first)
        if (i := _first_bad(differs)) is not None:
            row = rows[i] if rows is not None else i + 1
            raise _fail(path, row, (names or {}).get(name, name),
                        f"the same value on every row of patient {df['PatientID'].iloc[i]} "
                        f"({first.iloc[i]!s})", col.iloc[i])


def write_formatted(df: pd.DataFrame, path: str | Path) -> None:
    """Write the formatted table as CSV (ISO times, empty for missing) or parquet, by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    else:
        raise ValueError(f"{path}: expected a .csv or .parquet file name")


# ------------------------------------------------------------------ raw TJH xlsx
def excel_serial(when: datetime) -> float:
    return (when - EXCEL_EPOCH) / timedelta(days=1)


def from_excel_serial(x: float) -> datetime:
    return EXCEL_EPOCH + timedelta(seconds=round(x * 86_400))   # to the second: undoes float error


def _tjh_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return from_excel_serial(float(value))
    return None


def _tjh_number(value: Any) -> float | None:
    """A cell's number (numeric text is accepted); None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def read_tjh_xlsx(path: str | Path) -> pd.DataFrame:
    """The TJH release (time_series_375_prerpocess_en.xlsx) as a formatted table, rows as in the file."""
    from openpyxl import load_workbook

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:   # openpyxl raises several types for a file that is not a workbook
        raise DataError(f"{path}: not a readable xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        for name in TJH_FIXED:
            if name not in header:
                raise _fail(path, "header row", name, f"a column named {name!r} (required: {', '.join(TJH_FIXED)})",
                            "no such column")
        index = {name: header.index(name) for name in TJH_FIXED}
        labs = [(name, i) for i, name in enumerate(header) if name and name not in TJH_FIXED and name != TJH_DROPPED]
        table = _read_tjh_rows(path, rows, index, labs)
    finally:
        book.close()
    return table


def _read_tjh_rows(path: Path, rows: Iterable[tuple], index: dict[str, int], labs: list[tuple[str, int]]) -> pd.DataFrame:
    records, row_numbers = [], []
    patient = None
    for n, row in enumerate(rows, start=1):
        row = tuple(row) + (None,) * (max(index.values()) + 1 - len(row))
        if all(_empty(v) for v in row):
            continue
        cell = row[index["PATIENT_ID"]]
        if not _empty(cell):
            pid = _tjh_number(cell)
            if pid is None or pid != int(pid):
                raise _fail(path, n, "PATIENT_ID", "an integer patient id", cell)
            patient = str(int(pid))
        elif patient is None:
            raise _fail(path, n, "PATIENT_ID", "a patient id on the first data row (later rows may leave it empty)", cell)
        if _empty(row[index["RE_DATE"]]):
            continue
        rec: dict[str, Any] = {"PatientID": patient}
        for name, column in (("RE_DATE", "RecordTime"), ("Admission time", "AdmissionTime"),
                             ("Discharge time", "DischargeTime")):
            value = row[index[name]]
            rec[column] = None if _empty(value) else _tjh_time(value)
            if rec[column] is None and not _empty(value):
                raise _fail(path, n, name, "an Excel serial date-time (days since 1899-12-30)", value)
        for name, column, allowed in (("outcome", "Outcome", (0, 1)), ("gender", "Sex", (1, 2)), ("age", "Age", None)):
            value = row[index[name]]
            x = None if _empty(value) else _tjh_number(value)
            if not _empty(value) and (x is None or allowed is not None and x not in allowed or x < 0):
                raise _fail(path, n, name, " or ".join(map(str, allowed)) if allowed else "a number of years", value)
            rec[column] = x
        if rec["Sex"] is not None:
            rec["Sex"] = 1.0 if rec["Sex"] == 1 else 0.0   # 1 male, 2 female -> 1 male, 0 female
        for name, i in labs:
            value = row[i] if i < len(row) else None
            x = None if _empty(value) else _tjh_number(value)
            if x is None and not _empty(value):
                raise _fail(path, n, name, "a number or empty", value)
            rec[name] = x
        records.append(rec)
        row_numbers.append(n)
    if not records:
        raise DataError(f"{path}: no data rows with a RE_DATE")
    df = pd.DataFrame.from_records(records, columns=["PatientID", "RecordTime", "AdmissionTime", "DischargeTime",
                                                     "Outcome", "Sex", "Age", *(name for name, _ in labs)])
    for name in TIMES:
        df[name] = pd.to_datetime(df[name]).astype("datetime64[ns]")
    for name in ("Outcome", "Sex", "Age", *(name for name, _ in labs)):
        df[name] = df[name].astype("float64")
    tjh_names = {"AdmissionTime": "Admission time", "DischargeTime": "Discharge time", "Outcome": "outcome",
                 "Sex": "gender", "Age": "age"}
    _check_per_patient(df, path, tuple(tjh_names), row_numbers, tjh_names)
    for name, tjh in tjh_names.items():   # per patient: fill the gaps
        filled = df[name].groupby(df["PatientID"], sort=False).transform("first")
        if (i := _first_bad(filled.isna())) is not None:
            raise _fail(path, row_numbers[i], tjh, f"a value on at least one row of patient {df['PatientID'].iloc[i]}", None)
        df[name] = filled
    df["LOS"] = ((df["DischargeTime"] - df["RecordTime"]) / pd.Timedelta(days=1)).clip(lower=0)
    df["Readmission"] = np.nan
    return df[[*FIXED, *(name for name, _ in labs)]]


def write_tjh_xlsx(df: pd.DataFrame, path: str | Path, split_draws: bool = False) -> None:
    """Write a formatted table in the raw TJH layout, quirks included: the 81-column header
    (trailing spaces, the constant nCoV column), PATIENT_ID on a patient's first row only,
    Excel serial date-times, gender 1/2. With `split_draws`, each record becomes two blood
    draws on the same day (08:00 and 16:30) sharing its values: the first half of the measured
    labs on the first, the rest on the second, and one lab on both (so merging is exercised
    and the day's mean equals the record's value exactly). Features that are not TJH labs
    are not written."""
    from openpyxl import Workbook

    labs = [name for name in TJH_LABS if name in df.columns]
    book = Workbook()
    sheet = book.active
    sheet.append(list(TJH_HEADER))
    column = {name.strip(): i for i, name in enumerate(TJH_HEADER)}
    previous = None
    for rec in df.to_dict("records"):
        present = [name for name in labs if not pd.isna(rec[name])]
        day = pd.Timestamp(rec["RecordTime"]).to_pydatetime()
        if split_draws and len(present) >= 2:
            half = len(present) // 2
            draws = [(day.replace(hour=8, minute=0), present[:half + 1]), (day.replace(hour=16, minute=30), present[half:])]
        else:
            draws = [(day if day.hour or day.minute else day.replace(hour=9, minute=15), present)]
        for when, names in draws:
            row: list[Any] = [None] * len(TJH_HEADER)
            if rec["PatientID"] != previous:
                row[column["PATIENT_ID"]] = int(rec["PatientID"])
                previous = rec["PatientID"]
            row[column["RE_DATE"]] = excel_serial(when)
            row[column["age"]] = int(rec["Age"]) if float(rec["Age"]).is_integer() else float(rec["Age"])
            row[column["gender"]] = 1 if int(rec["Sex"]) == 1 else 2
            row[column["Admission time"]] = excel_serial(pd.Timestamp(rec["AdmissionTime"]).to_pydatetime())
            row[column["Discharge time"]] = excel_serial(pd.Timestamp(rec["DischargeTime"]).to_pydatetime())
            row[column["outcome"]] = int(rec["Outcome"])
            row[column[TJH_DROPPED]] = -1
            for name in names:
                row[column[name]] = float(rec[name])
            sheet.append(row)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


# ------------------------------------------------------------------ preprocessing and records
def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The convention's preprocessing: negative feature values -> missing; rows of one calendar
    day merged (means of features and LOS over non-missing values); sorted by patient and day."""
    features = [c for c in df.columns if c not in FIXED]
    df = df.copy()
    df[features] = df[features].where(~(df[features] < 0))
    df["RecordTime"] = df["RecordTime"].dt.normalize()
    order = {pid: i for i, pid in enumerate(dict.fromkeys(df["PatientID"]))}
    grouped = df.groupby(["PatientID", "RecordTime"], sort=False, dropna=False)
    means = grouped[[*features, "LOS"]].mean()
    firsts = grouped[[c for c in PER_PATIENT]].first()
    merged = pd.concat([firsts, means], axis=1).reset_index()
    merged["_order"] = merged["PatientID"].map(order)
    merged = merged.sort_values(["_order", "RecordTime"], kind="stable").drop(columns="_order")
    return merged[[*FIXED, *features]].reset_index(drop=True)


def feature_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in FIXED]


def to_records(df: pd.DataFrame, features: Sequence[str], path: str | Path = "<table>",
               observation_days: float | None = None, min_visits: int = 2) -> list[Record]:
    """Each patient's visits (of a `prepare`d table) on `features`, up to `observation_days`
    after the admission day when given; patients with fewer than `min_visits` visits are left out."""
    for name in features:
        if name not in df.columns:
            raise _fail(path, "header row", name, "a feature column named " + repr(name), "no such column")
    out = []
    day = (df["RecordTime"].dt.normalize() - df["AdmissionTime"].dt.normalize()).dt.days
    values = df[list(features)].to_numpy(dtype="float64")
    for pid, idx in df.groupby("PatientID", sort=False).indices.items():
        idx = np.sort(idx)
        if observation_days is not None:
            idx = idx[day.to_numpy()[idx] <= observation_days]
        if len(idx) < min_visits:
            continue
        first = df.iloc[idx[0]]
        readmission = first["Readmission"]
        out.append(Record(
            patient_id=str(pid), sex=int(first["Sex"]), age=float(first["Age"]),
            days=tuple(int(d) for d in day.to_numpy()[idx]), features=tuple(features),
            values=tuple(tuple(float(x) for x in values[i]) for i in idx),
            outcome=int(first["Outcome"]), readmission=None if pd.isna(readmission) else int(readmission)))
    return out
