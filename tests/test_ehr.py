"""Structured-EHR data (TJH, MIMIC-IV): readers of the raw TJH xlsx and the formatted table,
preprocessing, the synthetic cohorts, splits, the serializer (budget, shuffle, no leak)."""
from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta
from random import Random

import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook

from ehrmind.tasks.base import DataError
from ehrmind.tasks.ehr import cohort, formats, serialize, synthetic
from ehrmind.tasks.ehr.features import MIMIC_FEATURES, TJH_LABS, TJH_SUBSET
from ehrmind.tasks.ehr.formats import Record

# The release's header, as /work/shared/reference/tjh_format.md lists it (trailing spaces included).
TJH_HEADER = [
    "PATIENT_ID", "RE_DATE", "age", "gender", "Admission time", "Discharge time", "outcome",
    "Hypersensitive cardiac troponinI", "hemoglobin", "Serum chloride", "Prothrombin time", "procalcitonin",
    "eosinophils(%)", "Interleukin 2 receptor", "Alkaline phosphatase", "albumin", "basophil(%)",
    "Interleukin 10", "Total bilirubin", "Platelet count", "monocytes(%)", "antithrombin", "Interleukin 8",
    "indirect bilirubin", "Red blood cell distribution width ", "neutrophils(%)",
    "total protein", "Quantification of Treponema pallidum antibodies", "Prothrombin activity", "HBsAg",
    "mean corpuscular volume", "hematocrit", "White blood cell count", "Tumor necrosis factorα",
    "mean corpuscular hemoglobin concentration", "fibrinogen", "Interleukin 1β", "Urea", "lymphocyte count",
    "PH value", "Red blood cell count", "Eosinophil count", "Corrected calcium", "Serum potassium", "glucose",
    "neutrophils count", "Direct bilirubin", "Mean platelet volume", "ferritin", "RBC distribution width SD",
    "Thrombin time", "(%)lymphocyte", "HCV antibody quantification", "D-D dimer", "Total cholesterol",
    "aspartate aminotransferase", "Uric acid", "HCO3-", "calcium",
    "Amino-terminal brain natriuretic peptide precursor(NT-proBNP)", "Lactate dehydrogenase",
    "platelet large cell ratio ", "Interleukin 6", "Fibrin degradation products",
    "monocytes count", "PLT distribution width", "globulin", "γ-glutamyl transpeptidase",
    "International standard ratio", "basophil count(#)", "2019-nCoV nucleic acid detection",
    "mean corpuscular hemoglobin ", "Activation of partial thromboplastin time",
    "High sensitivity C-reactive protein", "HIV antibody quantification", "serum sodium",
    "thrombocytocrit", "ESR", "glutamic-pyruvic transaminase", "eGFR", "creatinine"]
COL = {name.strip(): i for i, name in enumerate(TJH_HEADER)}
EPOCH = datetime(1899, 12, 30)
LDH, CRP, LYMPH = "Lactate dehydrogenase", "High sensitivity C-reactive protein", "(%)lymphocyte"


def serial(*args) -> float:
    return (datetime(*args) - EPOCH) / timedelta(days=1)


def tjh_row(**cells) -> list:
    row = [None] * len(TJH_HEADER)
    for name, value in cells.items():
        row[COL[name.replace("_", " ") if name.replace("_", " ") in COL else name]] = value
    return row


def tjh_rows() -> list[list]:
    """Hand-built rows in the release's layout; comments give what the reader must make of them."""
    adm1, dis1 = serial(2020, 1, 30, 22, 0), serial(2020, 2, 10, 14, 0)
    return [
        # patient 1: two draws on 31 Jan (LDH 400 and 500 -> 450), a negative IL-6 (-> missing)
        tjh_row(PATIENT_ID=1, RE_DATE=serial(2020, 1, 31, 1, 9), age=63, gender=1, **{
            "Admission time": adm1, "Discharge time": dis1, "outcome": 1, LDH: 400, CRP: 50.5, LYMPH: 8.5,
            "2019-nCoV nucleic acid detection": -1}),
        tjh_row(RE_DATE=serial(2020, 1, 31, 18, 30), age=63, gender=1, **{
            "Admission time": adm1, "Discharge time": dis1, "outcome": 1, LDH: 500, "hemoglobin": 120,
            "Red blood cell distribution width": 13.1, "Interleukin 6": -3, "2019-nCoV nucleic acid detection": -1}),
        [None] * len(TJH_HEADER),                                        # an empty row: skipped
        tjh_row(**{LDH: 999}),                                           # no RE_DATE: dropped
        tjh_row(RE_DATE=serial(2020, 2, 3, 9, 0), **{LDH: 620, CRP: 80}),  # per-patient cells left empty
        # patient 2: RE_DATE as a date-formatted cell (openpyxl gives a datetime), glucose as text
        tjh_row(PATIENT_ID=2, RE_DATE=datetime(2020, 2, 1, 10, 0), age=45, gender=2, **{
            "Admission time": serial(2020, 2, 1, 8, 0), "Discharge time": serial(2020, 2, 15, 8, 0), "outcome": 0,
            LDH: 210, "glucose": "5.5"}),
        tjh_row(RE_DATE=serial(2020, 2, 4, 10, 0), age=45, gender=2, **{
            "Admission time": serial(2020, 2, 1, 8, 0), "Discharge time": serial(2020, 2, 15, 8, 0), "outcome": 0,
            LDH: 190}),
        # patient 3: one visit only (dropped by the >= 2 visits rule)
        tjh_row(PATIENT_ID=3, RE_DATE=serial(2020, 2, 2, 10, 0), age=70, gender=1, **{
            "Admission time": serial(2020, 2, 2, 8, 0), "Discharge time": serial(2020, 2, 9, 8, 0), "outcome": 0,
            LDH: 300}),
    ]


def write_xlsx(path, rows, header=TJH_HEADER):
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    for cell in sheet["B"]:
        if isinstance(cell.value, datetime):
            cell.number_format = "yyyy-mm-dd hh:mm"
    book.save(path)
    return path


def texts(records, **kw) -> dict[str, str]:
    return {r.patient_id: serialize.serialize_record(r, 10_000, **kw).text for r in records}


def read_tjh(path, **kw):
    table = formats.prepare(formats.read_tjh_xlsx(path))
    return formats.to_records(table, formats.feature_columns(table), path, **kw)


# ---------------------------------------------------------------- raw TJH
def test_header_matches_the_documented_release():
    assert list(formats.TJH_HEADER) == TJH_HEADER and len(TJH_HEADER) == 81
    assert [h.strip() for h in TJH_HEADER[7:] if h != "2019-nCoV nucleic acid detection"] == list(TJH_LABS)


def test_hand_built_tjh_xlsx(tmp_path):
    path = write_xlsx(tmp_path / "time_series_375_prerpocess_en.xlsx", tjh_rows())
    raw = formats.read_tjh_xlsx(path)
    assert list(raw.columns[:9]) == list(formats.FIXED) and len(raw.columns) == 9 + 73
    assert "2019-nCoV nucleic acid detection" not in raw.columns
    assert raw["PatientID"].tolist() == ["1", "1", "1", "2", "2", "3"]          # forward-filled; rows 3, 4 gone
    assert raw["RecordTime"].iloc[0] == pd.Timestamp(2020, 1, 31, 1, 9)      # 43861.0479 and so on
    assert raw["Sex"].tolist() == [1, 1, 1, 0, 0, 1]
    records = read_tjh(path)
    assert [r.patient_id for r in records] == ["1", "2"]
    p1, p2 = records
    assert (p1.sex, p1.age, p1.outcome, p1.readmission, p1.days) == (1, 63, 1, None, (1, 4))
    assert texts(records) == {
        "1": "Sex: male. Age: 63.\nVisit days since admission: 1, 4\n"
             "hemoglobin (g/L, normal 130-175): 120, NaN\n"
             "Red blood cell distribution width: 13.1, NaN\n"
             "(%)lymphocyte (%, normal 20-40): 8.5, NaN\n"
             "Lactate dehydrogenase (U/L, normal 120-250): 450, 620\n"
             "High sensitivity C-reactive protein (mg/L, normal <=1): 50.5, 80",
        "2": "Sex: female. Age: 45.\nVisit days since admission: 0, 3\n"
             "glucose (mmol/L, normal 4.1-5.9): 5.5, NaN\n"
             "Lactate dehydrogenase (U/L, normal 120-250): 210, 190"}


def tjh_error(tmp_path, rows, header=TJH_HEADER) -> str:
    path = write_xlsx(tmp_path / "bad.xlsx", rows, header)
    with pytest.raises(DataError) as info:
        formats.read_tjh_xlsx(path)
    return str(info.value)


@pytest.mark.parametrize("row, column, value, expect", [
    (0, "gender", 3, "1 or 2"),
    (1, "RE_DATE", "yesterday", "Excel serial"),
    (5, LDH, "<0.1", "a number"),
    (0, "PATIENT_ID", "P-1", "integer patient id"),
    (6, "outcome", 1, "same value on every row of patient 2"),     # patient 2's first row says 0
])
def test_tjh_malformed_cells(tmp_path, row, column, value, expect):
    rows = tjh_rows()
    rows[row][COL[column]] = value
    msg = tjh_error(tmp_path, rows)
    assert "bad.xlsx" in msg and f"row {row + 1}," in msg and f"column '{column}'" in msg and expect in msg
    assert repr(value) in msg


def test_tjh_structural_errors(tmp_path):
    rows = tjh_rows()
    rows[0][COL["PATIENT_ID"]] = None
    msg = tjh_error(tmp_path, rows)
    assert "row 1," in msg and "'PATIENT_ID'" in msg and "first data row" in msg
    header = [h if h != "outcome" else "Outcome " for h in TJH_HEADER]
    msg = tjh_error(tmp_path, tjh_rows(), header)
    assert "header row" in msg and "'outcome'" in msg
    rows = tjh_rows()
    for r in rows[5:7]:                                           # patient 2 never says its age
        r[COL["age"]] = None
    msg = tjh_error(tmp_path, rows)
    assert "row 6," in msg and "'age'" in msg and "patient 2" in msg
    (tmp_path / "not.xlsx").write_text("PATIENT_ID,RE_DATE\n")
    with pytest.raises(DataError, match="not.xlsx.*not a readable xlsx"):
        formats.read_tjh_xlsx(tmp_path / "not.xlsx")


# ---------------------------------------------------------------- formatted table
FORMATTED = """PatientID,RecordTime,AdmissionTime,DischargeTime,Outcome,LOS,Readmission,Sex,Age,Heart Rate,Respiratory rate,pH
a1,2150-03-01 08:00:00,2150-03-01 06:00:00,2150-03-05 12:00:00,0,4.2,1,0,70,88,18,
a1,2150-03-01 20:00:00,2150-03-01 06:00:00,2150-03-05 12:00:00,0,3.7,1,0,70,92,,7.31
a1,2150-03-03 09:00:00,2150-03-01 06:00:00,2150-03-05 12:00:00,0,2.1,1,0,70,-5,22,7.35
a2,2150-04-01 08:00:00,2150-04-01 06:00:00,2150-04-02 12:00:00,1,1.2,1,1,81.5,120,30,7.2
"""


def test_hand_built_formatted_csv_and_parquet(tmp_path):
    (tmp_path / "mimic.csv").write_text(FORMATTED)
    table = formats.read_formatted(tmp_path / "mimic.csv")
    formats.write_formatted(table, tmp_path / "mimic.parquet")
    for path in (tmp_path / "mimic.csv", tmp_path / "mimic.parquet"):
        records = formats.to_records(formats.prepare(formats.read_formatted(path)), ["Heart Rate", "Respiratory rate", "pH"])
        assert [r.patient_id for r in records] == ["a1"]                         # a2 has one visit
        assert (records[0].sex, records[0].readmission) == (0, 1)
        assert texts(records)["a1"] == (
            "Sex: female. Age: 70.\nVisit days since admission: 0, 2\n"
            "Heart Rate (bpm, normal 60-100): 90, NaN\n"                         # mean of 88, 92; -5 -> missing
            "Respiratory rate (breaths/min, normal 12-20): 18, 22\n"
            "pH (normal 7.35-7.45): 7.31, 7.35")


@pytest.mark.parametrize("line, column, expect, got", [
    (2, "Sex", "0 or 1", "'M'"), (1, "RecordTime", "ISO date-time", "'01/03/2150'"),
    (3, "Heart Rate", "a number or empty", "'fast'"), (4, "Outcome", "0 or 1", "''"),
    (3, "Age", "same value on every row of patient a1", "71"),
])
def test_formatted_malformed(tmp_path, line, column, expect, got):
    lines = FORMATTED.splitlines()
    header = lines[0].split(",")
    cells = lines[line].split(",")
    cells[header.index(column)] = {"Sex": "M", "RecordTime": "01/03/2150", "Heart Rate": "fast", "Outcome": "",
                                   "Age": "71"}[column]
    lines[line] = ",".join(cells)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        formats.read_formatted(tmp_path / "bad.csv")
    msg = str(info.value)
    assert "bad.csv" in msg and f"row {line}," in msg and f"column '{column}'" in msg and expect in msg and got in msg


def test_formatted_missing_column_and_bad_file(tmp_path):
    (tmp_path / "t.csv").write_text(FORMATTED.replace(",Sex,", ",Gender,", 1))
    with pytest.raises(DataError, match=r"t.csv: header row, column 'Sex'"):
        formats.read_formatted(tmp_path / "t.csv")
    table = formats.read_formatted(_write(tmp_path / "ok.csv", FORMATTED)).drop(columns=["Outcome"])
    table.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t.parquet: header row, column 'Outcome'"):
        formats.read_formatted(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="file not found"):
        formats.read_formatted(tmp_path / "none.csv")
    with pytest.raises(DataError, match="header row, column 'Glucose'"):
        formats.to_records(formats.prepare(table.assign(Outcome=0)), ["Glucose"], "ok.csv")


def _write(path, text):
    path.write_text(text)
    return path


# ---------------------------------------------------------------- round trip through the real formats
def test_embedded_tjh_round_trips_through_xlsx_csv_and_parquet(tmp_path):
    table = synthetic.generate_tjh(60, seed=4)
    formats.write_tjh_xlsx(table, tmp_path / "tjh.xlsx", split_draws=True)
    formats.write_formatted(table, tmp_path / "tjh.csv")
    formats.write_formatted(table, tmp_path / "tjh.parquet")
    spec = cohort.SPECS["tjh_mortality"]
    sources = {"xlsx": {"source": "tjh_xlsx", "path": str(tmp_path / "tjh.xlsx")},
               "csv": {"source": "formatted", "path": str(tmp_path / "tjh.csv")},
               "parquet": {"source": "formatted", "path": str(tmp_path / "tjh.parquet")}}
    raw = formats.read_tjh_xlsx(tmp_path / "tjh.xlsx")
    assert len(raw) > len(table)                                   # draws were split, and merge back
    for split in ("train", "test"):
        embedded = texts(cohort.records_for(spec, split, {"n_patients": 60}, 4))
        for name, cfg in sources.items():
            assert texts(cohort.records_for(spec, split, cfg, 4)) == embedded, name


def test_embedded_mimic_round_trips_through_csv_and_parquet(tmp_path):
    table = synthetic.generate_mimic4(80, seed=2)
    for suffix in ("csv", "parquet"):
        formats.write_formatted(table, tmp_path / f"m.{suffix}")
        for name in ("mimic4_mortality", "mimic4_readmission"):
            spec = cohort.SPECS[name]
            on_disk = cohort.records_for(spec, "test", {"source": "formatted", "path": str(tmp_path / f"m.{suffix}"),
                                                          "test_size": 0.25}, 2)
            embedded = cohort.records_for(spec, "test", {"n_patients": 80, "test_size": 0.25}, 2)
            assert texts(on_disk) == texts(embedded)
            assert [r.label(spec.target) for r in on_disk] == [r.label(spec.target) for r in embedded]


# ---------------------------------------------------------------- synthetic cohorts
def test_synthetic_is_seeded_and_has_the_stated_shape():
    a, b = synthetic.generate_tjh(375, 0), synthetic.generate_tjh(375, 0)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.generate_tjh(375, 1))
    per_patient = a.groupby("PatientID")
    assert per_patient["Outcome"].first().sum() == 174                     # the release's 174 of 375
    assert set(per_patient.size()) <= set(range(2, 7)) and {2, 6} <= set(per_patient.size())
    assert list(a.columns[9:]) == [f.name for f in TJH_SUBSET]
    assert 0.2 < a[[f.name for f in TJH_SUBSET]].isna().mean().mean() < 0.6  # sparse, like blood draws
    for f in TJH_SUBSET:
        assert (a[f.name].dropna() >= 0).all()
    m = synthetic.generate_mimic4(1000, 0)
    labels = m.groupby("PatientID")[["Outcome", "Readmission"]].first()
    assert labels["Outcome"].sum() == 120 and labels["Readmission"].sum() == 200
    assert (labels["Readmission"] >= labels["Outcome"]).all()               # a death counts as readmission
    gcs = m[["Glascow coma scale eye opening", "Glascow coma scale motor response",
             "Glascow coma scale verbal response"]].sum(axis=1, min_count=3)
    assert np.allclose(gcs.dropna(), m["Glascow coma scale total"].dropna())
    assert list(m.columns[9:]) == [f.name for f in MIMIC_FEATURES]


def test_synthetic_is_fast():
    started = time.perf_counter()
    synthetic.generate_mimic4(3000, 0)
    assert time.perf_counter() - started < 15          # about 3 s alone on a shared 2-core machine


def _last_values(table: pd.DataFrame, name: str) -> pd.Series:
    return table.groupby("PatientID")[name].last()


@pytest.mark.parametrize("generate, label, planted, others", [
    (synthetic.generate_tjh, "Outcome", synthetic.TJH_PLANTED["outcome"], ["serum sodium", "albumin", "Urea"]),
    (synthetic.generate_mimic4, "Outcome", synthetic.MIMIC_PLANTED["outcome"], ["Systolic blood pressure", "Glucose"]),
    (synthetic.generate_mimic4, "Readmission", synthetic.MIMIC_PLANTED["readmission"], ["Diastolic blood pressure"]),
])
def test_only_the_planted_features_carry_the_label(generate, label, planted, others):
    from scipy.stats import mannwhitneyu
    table = generate(1500, 1)
    y = table.groupby("PatientID")[label].first()
    if label == "Readmission":        # survivors' readmission: drivers apart from death's
        y = y[table.groupby("PatientID")["Outcome"].first() == 0]
    for name in planted + tuple(others):
        x = _last_values(table, name).loc[y.index]
        ok = x.notna()
        p = mannwhitneyu(x[ok & (y == 1)], x[ok & (y == 0)]).pvalue
        if name in planted and (label == "Outcome" or name in ("Glucose", "Temperature", "pH")):
            assert p < 1e-6, name
        elif name not in planted:
            assert p > 1e-3, name


# ---------------------------------------------------------------- splits
def test_splits_are_stratified_disjoint_and_order_free():
    spec = cohort.SPECS["tjh_mortality"]
    train, test = (cohort.records_for(spec, s, {}, 0) for s in ("train", "test"))
    assert len(test) == 75 and sum(r.outcome for r in test) == 35            # round(0.2 * 174), round(0.2 * 201)
    assert len(train) == 300 and not {r.patient_id for r in train} & {r.patient_id for r in test}
    records = cohort.load_records(spec, {}, 0)
    assert cohort.split_ids(records[::-1], 0.2, 0) == cohort.split_ids(records, 0.2, 0)
    assert cohort.split_ids(records, 0.2, 1) != cohort.split_ids(records, 0.2, 0)
    mort, readm = (cohort.records_for(cohort.SPECS[n], "test", {}, 0) for n in ("mimic4_mortality", "mimic4_readmission"))
    assert [r.patient_id for r in mort] == [r.patient_id for r in readm]     # one split for both MIMIC-IV tasks
    assert len(mort) == 200 and sum(r.outcome for r in mort) == 24
    assert len(cohort.records_for(spec, "test", {"test_size": 50}, 0)) == 50


def test_readmission_needs_its_label(tmp_path):
    table = synthetic.generate_mimic4(30, 0)
    table.loc[table["PatientID"] == table["PatientID"].iloc[0], "Readmission"] = np.nan
    formats.write_formatted(table, tmp_path / "m.csv")
    cfg = {"source": "formatted", "path": str(tmp_path / "m.csv"), "test_size": 0.2}
    assert cohort.records_for(cohort.SPECS["mimic4_mortality"], "train", cfg, 0)
    with pytest.raises(DataError, match=r"m.csv: patient 10000001, column 'Readmission'"):
        cohort.records_for(cohort.SPECS["mimic4_readmission"], "train", cfg, 0)


@pytest.mark.parametrize("cfg, match", [({"source": "tjh_xlsx", "path": "x"}, "unknown source"),
                                        ({"source": "formatted"}, "'path'"), ({"test_size": 1.5}, "test_size"),
                                        ({"n_patients": 0}, "n_patients"), ({"features": "pH"}, "features"),
                                        ({"mortality": 0.3, "readmission_rate": 0.2}, "readmission_rate")])
def test_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        cohort.records_for(cohort.SPECS["mimic4_mortality"], "train", cfg, 0)


# ---------------------------------------------------------------- serializer
RECORD = Record("p1", 0, 71.0, (0, 1, 3), ("Heart Rate", "pH", "Glucose", "Weight"),
                ((80.0, math.nan, math.nan, math.nan), (95.5, 7.3, math.nan, math.nan), (101.25, 7.412, math.nan, 82.0)),
                1, 0)


def test_serializer_text():
    s = serialize.serialize_record(RECORD)
    assert s.text == ("Sex: female. Age: 71.\nVisit days since admission: 0, 1, 3\n"
                      "Heart Rate (bpm, normal 60-100): 80, 95.5, 101.2\n"      # 4 significant digits
                      "pH (normal 7.35-7.45): NaN, 7.3, 7.412\n"
                      "Weight (kg): NaN, NaN, 82")                               # Glucose never measured: left out
    assert s.features == ("Heart Rate", "pH", "Weight") and s.visits == 3
    back = serialize.parse_record(s.text, s.features)
    assert (back.sex, back.age, back.days) == (0, 71.0, (0, 1, 3))
    assert back.values["pH"][1:] == (7.3, 7.412) and math.isnan(back.values["pH"][0])


def test_budget_drops_the_oldest_visits_then_lines():
    lines = serialize.serialize_record(RECORD).text.splitlines()
    full = sum(serialize.approx_tokens(x) for x in lines)
    s = serialize.serialize_record(RECORD, token_budget=full - 1)
    assert s.visits == 2 and "Visit days since admission: 1, 3" in s.text and "80," not in s.text
    assert sum(serialize.approx_tokens(x) for x in s.text.splitlines()) <= full - 1
    one = serialize.serialize_record(RECORD, token_budget=30, count_tokens=lambda line: 10)
    assert one.visits == 1 and one.features == ("Heart Rate",)          # 2 header lines + 1 feature line
    assert one.text.endswith("Heart Rate (bpm, normal 60-100): 101.2")


def test_shuffle_moves_the_stated_share_of_features():
    names = [f"f{i}" for i in range(10)]
    for fraction, moved in ((0.2, 2), (0.4, 4), (0.6, 6), (1.0, 10), (0.05, 2)):
        out = serialize.permute(names, fraction, Random(3))
        assert sorted(out) == names and sum(a != b for a, b in zip(out, names)) == moved
    assert serialize.permute(names, 0.0, Random(3)) == names
    with pytest.raises(ValueError):
        serialize.permute(names, 1.5, Random(3))
    record = cohort.records_for(cohort.SPECS["mimic4_mortality"], "test", {"n_patients": 50, "test_size": 0.2}, 0)[0]
    plain = serialize.serialize_record(record)
    shuffled = serialize.serialize_record(record, shuffle_fraction=1.0, seed=1)
    assert sorted(shuffled.text.splitlines()) == sorted(plain.text.splitlines())
    assert shuffled.features != plain.features and shuffled == serialize.serialize_record(record, shuffle_fraction=1.0, seed=1)
    assert serialize.serialize_record(record, shuffle_fraction=1.0, seed=2).features != shuffled.features


def test_nothing_after_the_prediction_point_leaks_hand_built(tmp_path):
    # a1 is admitted on day 0; visits on days 0, 1 and 5. With a 2-day window the prediction point is
    # day 1: day 5's values, discharge, LOS and the labels must not reach the text.
    rows = [("a1", "2150-03-01 08:00:00", 88, 7.31, 4.5), ("a1", "2150-03-02 08:00:00", 93, 7.33, 3.5),
            ("a1", "2150-03-06 08:00:00", 4321, 6.12, 876.5)]
    text = "PatientID,RecordTime,AdmissionTime,DischargeTime,Outcome,LOS,Readmission,Sex,Age,Heart Rate,pH\n" + "".join(
        f"{p},{t},2150-03-01 06:00:00,2150-03-31 23:59:00,1,{los},1,1,66,{hr},{ph}\n" for p, t, hr, ph, los in rows)
    (tmp_path / "leak.csv").write_text(text)
    table = formats.prepare(formats.read_formatted(tmp_path / "leak.csv"))
    (record,) = formats.to_records(table, ["Heart Rate", "pH"], observation_days=2)
    shown = serialize.serialize_record(record).text
    assert "4321" not in shown and "6.12" not in shown and "876.5" not in shown
    assert "2150" not in shown and "30" not in shown.split("\n", 2)[1] and "died" not in shown
    assert "88, 93" in shown and "7.31, 7.33" in shown                     # the record up to day 1 is there
    (whole,) = formats.to_records(table, ["Heart Rate", "pH"])
    assert "4321" in serialize.serialize_record(whole).text                # without the window it would show


def test_nothing_after_the_prediction_point_leaks_synthetic(tmp_path):
    table = synthetic.generate_tjh(120, seed=9)
    window = 4
    day = (table["RecordTime"] - table["AdmissionTime"].dt.normalize()).dt.days
    marker = np.where(day > window, 90_000 + np.arange(len(table)), np.nan)   # unique, only after the window
    early = np.where(day <= 1, 10_000 + np.arange(len(table)), np.nan)        # only before: these must show
    table = table.assign(**{"Marker after": marker, "Marker before": early})
    table["LOS"] = 555.25 + np.arange(len(table))                              # after the prediction point too
    formats.write_formatted(table, tmp_path / "leak.parquet")
    spec = cohort.SPECS["tjh_mortality"]
    cfg = {"source": "formatted", "path": str(tmp_path / "leak.parquet"), "observation_days": window}
    records = cohort.records_for(spec, "train", cfg, 0) + cohort.records_for(spec, "test", cfg, 0)
    assert len(records) > 60
    shown_early = 0
    for r in records:
        text = serialize.serialize_record(r, 10_000).text
        assert "Marker after" not in text and not re.search(r"\b9\d{4}\b", text) and "555" not in text
        assert max(r.days) <= window
        shown_early += "Marker before" in text
    assert shown_early > 30                 # markers inside the window do reach the text: the check can fire
