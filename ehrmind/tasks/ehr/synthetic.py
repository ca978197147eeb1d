"""Seeded synthetic cohorts in the formatted-EHR layout, with planted outcome drivers.

`generate_tjh` and `generate_mimic4` return a DataFrame shaped like `formats.read_formatted`'s
after `formats.prepare` (one row per patient per day), so the tasks build prompts from
synthetic and real data along one code path. Everything is drawn from one NumPy generator
seeded with `seed`: the same arguments give the same table.

Patients: 2-6 visits (uniform), the first on admission day 0-2, then gaps of 1-5 days
(irregular, as blood draws and ICU charting are); discharge 0-3 days after the last visit.
Outcomes are assigned first, as exact counts (round(rate * n) positives on randomly chosen
patients), so a cohort's class balance is the stated one; then every feature value is
    center + between-patient spread + within-patient noise (+ the planted effect),
on a log scale for skewed labs (LDH, CRP, IL-6, D-dimer, troponin, ...), rounded to the
precision a laboratory reports and clipped to a plausible range. Only the PLANTED features
depend on the outcome, so an expert model that ranks features should rank them first:
    effect = +/- (1.0 + 0.8 * progress) between-patient SDs for a positive patient (worsening),
             +/- (0.1 - 0.3 * progress) for a negative one (recovering),
with progress 0 at the first visit and 1 at the last. Every other feature is independent of
the outcome (a cleaner test of feature ranking than real data, where labs correlate).

Missing values: features are measured in panels (blood count, chemistry, inflammation,
coagulation, cardiac for TJH; vitals, neurological checks, blood gas, ... for MIMIC); a panel
is drawn at a visit with its own probability, each value of a drawn panel is present with
probability 0.95, and a visit always has at least its first panel.

TJH-like (`generate_tjh`): the 18 labs of features.TJH_SUBSET (units and reference ranges
there). Planted: lactate dehydrogenase (up), lymphocyte % (down), hs-CRP (up), the three
labs Yan et al. (2020) found decisive. Defaults: 375 patients and 46.4 % deaths, the
release's size and rate (174 of 375). Admissions in January-February 2020, age about
N(58, 16) clipped to 18-95, 59 % male (TJH's figures, rounded).

MIMIC-IV-like (`generate_mimic4`): the 17 features of features.MIMIC_FEATURES, daily means of
ICU charting. Glasgow coma scale: eye, motor and verbal scores drawn per visit, total = their
sum; mean BP = (systolic + 2 diastolic) / 3 + noise; height and weight once per stay.
Planted for in-hospital death: respiratory rate (up), oxygen saturation (down), heart rate (up).
Readmission is "readmitted or died within 30 days of discharge" (tjh_format.md): a death is
a positive, and survivors are readmitted with a rate that makes the overall rate
`readmission_rate`; their readmission is driven by glucose (up), temperature (up) and pH
(down). So the readmission task's drivers are all six (MIMIC_PLANTED). Defaults: 1,000
patients, 12 % deaths and 20 % readmission-or-death (the real cohort: mortality about
10-15 %, readmission about 15-25 %). Dates lie in the 2100s, as MIMIC-IV's shifted dates do.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
import pandas as pd

from ehrmind.tasks.ehr.features import (
    CRT, DBP, FIO2, GCS_EYE, GCS_MOTOR, GCS_TOTAL, GCS_VERBAL, GLUCOSE, HEIGHT, HR, HS_CRP, LDH, LYMPH_PCT,
    MBP, MIMIC_FEATURES, PH, RR, SBP, SPO2, TEMP, TJH_SUBSET, WEIGHT)
from ehrmind.tasks.ehr.formats import FIXED

TJH_DEATH_RATE = 174 / 375
MIMIC_MORTALITY = 0.12
MIMIC_READMISSION = 0.20
VISITS = (2, 6)
PRESENT_IN_PANEL = 0.95
POSITIVE_EFFECT = (1.0, 0.8)    # (at the first visit, added by the last), in between-patient SDs
NEGATIVE_EFFECT = (0.1, -0.3)

TJH_PLANTED = {"outcome": (LDH, LYMPH_PCT, HS_CRP)}
MIMIC_PLANTED = {"outcome": (RR, SPO2, HR), "readmission": (RR, SPO2, HR, GLUCOSE, TEMP, PH)}


@dataclass(frozen=True)
class Spec:
    name: str
    center: float          # median value
    between: float         # between-patient SD (log units when log)
    within: float          # within-patient, visit-to-visit SD
    decimals: int
    low: float
    high: float
    panel: str
    log: bool = False
    direction: int = 0     # planted: +1 raised / -1 lowered with the outcome; 0 not planted
    driver: str = ""       # the label that drives a planted feature: "outcome" or "readmitted"


TJH_PANELS = {"blood count": 0.8, "chemistry": 0.65, "inflammation": 0.55, "coagulation": 0.45, "cardiac": 0.4}
TJH_SPECS = (
    Spec("Hypersensitive cardiac troponinI", 5, 0.9, 0.3, 1, 0.1, 50000, "cardiac", log=True),
    Spec("hemoglobin", 130, 15, 5, 0, 50, 200, "blood count"),
    Spec("procalcitonin", 0.06, 0.8, 0.3, 2, 0.02, 100, "inflammation", log=True),
    Spec("albumin", 36, 4, 2, 1, 15, 55, "chemistry"),
    Spec("Platelet count", 210, 60, 20, 0, 10, 700, "blood count"),
    Spec("neutrophils(%)", 70, 10, 4, 1, 20, 98, "blood count"),
    Spec("White blood cell count", 6, 0.35, 0.15, 2, 0.5, 60, "blood count", log=True),
    Spec("Urea", 4.8, 0.35, 0.15, 1, 0.8, 60, "chemistry", log=True),
    Spec("lymphocyte count", 1.1, 0.4, 0.15, 2, 0.05, 6, "blood count", log=True),
    Spec("Serum potassium", 4.1, 0.4, 0.25, 2, 2.5, 7.5, "chemistry"),
    Spec("glucose", 6.2, 0.25, 0.12, 2, 2.5, 35, "chemistry", log=True),
    Spec(LYMPH_PCT, 22, 7, 3, 1, 0.5, 70, "blood count", direction=-1, driver="outcome"),
    Spec("D-D dimer", 0.8, 1.0, 0.3, 2, 0.01, 21, "coagulation", log=True),
    Spec(LDH, 240, 0.3, 0.12, 0, 80, 3000, "chemistry", log=True, direction=+1, driver="outcome"),
    Spec("Interleukin 6", 8, 0.9, 0.3, 2, 1.5, 5000, "inflammation", log=True),
    Spec(HS_CRP, 15, 1.0, 0.3, 1, 0.1, 320, "inflammation", log=True, direction=+1, driver="outcome"),
    Spec("serum sodium", 139, 3, 1.5, 1, 115, 170, "chemistry"),
    Spec("creatinine", 75, 0.25, 0.1, 0, 30, 1500, "chemistry", log=True),
)
assert [s.name for s in TJH_SPECS] == [f.name for f in TJH_SUBSET]

MIMIC_PANELS = {"vitals": 0.97, "neuro": 0.85, "temperature": 0.9, "glucose": 0.7, "blood gas": 0.35,
                "oxygen": 0.3, "perfusion": 0.15}
MIMIC_SPECS = (
    Spec(DBP, 62, 10, 5, 0, 20, 130, "vitals"),
    Spec(FIO2, 0.45, 0.15, 0.05, 2, 0.21, 1.0, "oxygen"),
    Spec(GLUCOSE, 130, 0.25, 0.15, 0, 40, 800, "glucose", log=True, direction=+1, driver="readmitted"),
    Spec(HR, 85, 12, 6, 0, 30, 200, "vitals", direction=+1, driver="outcome"),
    Spec(SPO2, 97, 1.5, 1.0, 0, 60, 100, "vitals", direction=-1, driver="outcome"),
    Spec(RR, 19, 3.5, 2, 0, 5, 50, "vitals", direction=+1, driver="outcome"),
    Spec(SBP, 120, 15, 8, 0, 50, 230, "vitals"),
    Spec(TEMP, 36.9, 0.4, 0.25, 1, 33, 41.5, "temperature", direction=+1, driver="readmitted"),
    Spec(PH, 7.39, 0.04, 0.02, 2, 6.9, 7.7, "blood gas", direction=-1, driver="readmitted"),
)
GCS_P = {GCS_EYE: (0.08, 0.04, 0.18, 0.70), GCS_MOTOR: (0.05, 0.01, 0.02, 0.04, 0.13, 0.75),
         GCS_VERBAL: (0.22, 0.03, 0.05, 0.15, 0.55)}   # P(score 1, 2, ...)


def _effect(direction: int, positive: bool, progress: np.ndarray) -> np.ndarray:
    start, slope = POSITIVE_EFFECT if positive else NEGATIVE_EFFECT
    return direction * (start + slope * progress)


def _visit_days(rng: np.random.Generator) -> list[int]:
    n = int(rng.integers(VISITS[0], VISITS[1] + 1))
    day = int(rng.choice(3, p=(0.6, 0.3, 0.1)))
    days = [day]
    for _ in range(n - 1):
        day += int(rng.integers(1, 6))
        days.append(day)
    return days


def _panels(rng: np.random.Generator, n: int, panels: dict[str, float]) -> dict[str, np.ndarray]:
    drawn = {name: rng.random(n) < p for name, p in panels.items()}
    first = next(iter(panels))
    drawn[first] |= ~np.any(np.stack(list(drawn.values())), axis=0)   # never an empty visit
    return drawn


def _values(rng: np.random.Generator, spec: Spec, labels: dict[str, bool], progress: np.ndarray,
            measured: np.ndarray) -> np.ndarray:
    n = progress.size
    center = np.log(spec.center) if spec.log else spec.center
    z = rng.normal() * spec.between + rng.normal(size=n) * spec.within
    if spec.direction:
        z = z + _effect(spec.direction, labels[spec.driver], progress) * spec.between
    x = np.exp(center + z) if spec.log else center + z
    x = np.round(np.clip(x, spec.low, spec.high), spec.decimals)
    present = measured & (rng.random(n) < PRESENT_IN_PANEL)
    return np.where(present, x, np.nan)


def _positives(rng: np.random.Generator, n: int, rate: float, among: np.ndarray | None = None) -> np.ndarray:
    """A boolean vector with exactly round(rate * n) positives, drawn among `among` (default all)."""
    pool = np.arange(n) if among is None else np.flatnonzero(among)
    out = np.zeros(n, dtype=bool)
    out[rng.choice(pool, size=min(len(pool), int(round(rate * n))), replace=False)] = True
    return out


def _cohort(rng: np.random.Generator, labels: list[dict[str, bool]],
            values_of: Callable[[np.random.Generator, dict, np.ndarray], dict[str, np.ndarray]],
            features: list[str], first_id: int, start: datetime, span_days: int, age: tuple[float, float],
            male: float) -> pd.DataFrame:
    columns: dict[str, list] = {name: [] for name in (*FIXED, *features)}
    for i, lab in enumerate(labels):
        days = _visit_days(rng)
        progress = np.linspace(0.0, 1.0, len(days))
        admission = start + timedelta(days=int(rng.integers(span_days)), hours=int(rng.integers(24)),
                                      minutes=int(rng.integers(60)))
        midnight = admission.replace(hour=0, minute=0)
        discharge = midnight + timedelta(days=days[-1] + int(rng.integers(4)), hours=int(rng.integers(8, 20)))
        sex = float(rng.random() < male)
        years = float(np.clip(np.round(rng.normal(*age)), 18, 95))
        values = values_of(rng, lab, progress)
        when = [midnight + timedelta(days=d) for d in days]
        n = len(days)
        columns["PatientID"] += [str(first_id + i)] * n
        columns["RecordTime"] += when
        columns["AdmissionTime"] += [admission] * n
        columns["DischargeTime"] += [discharge] * n
        columns["Outcome"] += [float(lab["outcome"])] * n
        columns["LOS"] += [max(0.0, (discharge - w) / timedelta(days=1)) for w in when]
        columns["Readmission"] += [float(lab["readmission"]) if "readmission" in lab else np.nan] * n
        columns["Sex"] += [sex] * n
        columns["Age"] += [years] * n
        for name in features:
            columns[name].extend(values[name].tolist())
    df = pd.DataFrame(columns)
    for name in ("RecordTime", "AdmissionTime", "DischargeTime"):
        df[name] = df[name].astype("datetime64[ns]")
    return df


def generate_tjh(n_patients: int = 375, seed: int = 0, death_rate: float = TJH_DEATH_RATE) -> pd.DataFrame:
    """A TJH-like cohort (formatted layout, one row per patient-day)."""
    rng = np.random.default_rng(seed)
    died = _positives(rng, n_patients, death_rate)

    def values(rng, lab, progress):
        panels = _panels(rng, progress.size, TJH_PANELS)
        return {s.name: _values(rng, s, lab, progress, panels[s.panel]) for s in TJH_SPECS}

    return _cohort(rng, [{"outcome": bool(d)} for d in died], values, [s.name for s in TJH_SPECS], 1,
                   datetime(2020, 1, 10), 40, (58, 16), 0.59)


def generate_mimic4(n_patients: int = 1000, seed: int = 0, mortality: float = MIMIC_MORTALITY,
                    readmission_rate: float = MIMIC_READMISSION) -> pd.DataFrame:
    """A MIMIC-IV-like cohort (formatted layout, one row per patient-day); readmission_rate
    counts deaths, so it must be at least `mortality`."""
    if not 0 <= mortality <= readmission_rate < 1:
        raise ValueError(f"need 0 <= mortality <= readmission_rate < 1, got {mortality}, {readmission_rate}")
    rng = np.random.default_rng(seed)
    died = _positives(rng, n_patients, mortality)
    readmitted = _positives(rng, n_patients, readmission_rate - died.mean(), among=~died)
    labels = [{"outcome": bool(d), "readmitted": bool(r), "readmission": bool(d or r)} for d, r in zip(died, readmitted)]

    def values(rng, lab, progress):
        n = progress.size
        panels = _panels(rng, n, MIMIC_PANELS)
        out = {s.name: _values(rng, s, lab, progress, panels[s.panel]) for s in MIMIC_SPECS}
        neuro = panels["neuro"] & (rng.random(n) < PRESENT_IN_PANEL)
        for name, p in GCS_P.items():
            out[name] = np.where(neuro, rng.choice(np.arange(1, len(p) + 1), size=n, p=p).astype(float), np.nan)
        out[GCS_TOTAL] = out[GCS_EYE] + out[GCS_MOTOR] + out[GCS_VERBAL]
        bp = ~np.isnan(out[SBP]) & ~np.isnan(out[DBP])
        out[MBP] = np.where(bp, np.round((out[SBP] + 2 * out[DBP]) / 3 + rng.normal(0, 3, n)), np.nan)
        out[CRT] = np.where(panels["perfusion"], (rng.random(n) < 0.1).astype(float), np.nan)
        for name, (mean, sd, p) in {HEIGHT: (170, 10, 0.4), WEIGHT: (80, 18, 0.6)}.items():
            once = np.full(n, np.nan)
            if rng.random() < p:
                once[0] = round(float(rng.normal(mean, sd)), 1 if name == WEIGHT else 0)
            out[name] = once
        return out

    return _cohort(rng, labels, values, [f.name for f in MIMIC_FEATURES], 10_000_001, datetime(2150, 1, 1), 3650,
                   (64, 17), 0.55)
