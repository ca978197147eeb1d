"""Seeded synthetic EHRSHOT cohort in MEDS shape, with planted risk factors.

Each patient has birth, sex (static), a few outpatient visits over about three
years with background conditions, drugs, labs and procedures, and for half of the
patients a hospital admission. Per subtask the label is drawn first (Bernoulli
of its base rate); the subtask's risk factor is then planted before the
prediction time with probability 0.85 for positives and 0.1 for negatives, so the
task is learnable but noisy:

  new_hypertension    repeated systolic BP >= 140 mmHg (+ obesity, BMI >= 30)
  new_hyperlipidemia  LDL cholesterol >= 160 mg/dL
  new_acutemi         chest pain with troponin I > 0.04 ng/mL (+ coronary disease)
  new_pancan          weight loss with lipase > 160 U/L (+ jaundice)
  guo_readmission     heart failure and two earlier admissions (3+ in the record)
  guo_los             sepsis on the admission day (age >= 75 is noted, not planted)

New diagnoses happen 20-350 days after the prediction time (never visible);
readmissions 3-27 days after discharge. `risk_factors` reads the same rules back
from whatever part of a timeline a prompt shows; it names real codes, so it
applies unchanged to real data.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from random import Random
from typing import Mapping, Sequence

from ehrmind.tasks.ehrshot.formats import Dataset, Event, Label

SUBTASKS = ("new_acutemi", "new_hyperlipidemia", "new_hypertension", "new_pancan", "guo_readmission", "guo_los")
DEFAULT_BASE_RATES = {"new_acutemi": 0.15, "new_hyperlipidemia": 0.25, "new_hypertension": 0.3,
                      "new_pancan": 0.1, "guo_readmission": 0.2, "guo_los": 0.25}
FACTOR_P = (0.1, 0.85)   # P(risk factor planted | label 0), P(... | label 1)

SBP, BMI, LDL, TROPONIN, LIPASE = "LOINC/8480-6", "LOINC/39156-5", "LOINC/13457-7", "LOINC/10839-9", "LOINC/3040-3"
OBESITY, CHEST_PAIN, CAD = "SNOMED/414916001", "SNOMED/29857009", "SNOMED/53741008"
WEIGHT_LOSS, JAUNDICE, HEART_FAILURE, SEPSIS = "SNOMED/89362005", "SNOMED/18165001", "SNOMED/84114007", "SNOMED/91302008"
ADMISSION = "Visit/IP"
OUTCOME_CODES = {"new_hypertension": "SNOMED/38341003", "new_hyperlipidemia": "SNOMED/55822004",
                 "new_acutemi": "SNOMED/22298006", "new_pancan": "SNOMED/363418001"}

CODES = {
    "SNOMED/38341003": "Hypertensive disorder", "SNOMED/55822004": "Hyperlipidemia",
    "SNOMED/22298006": "Myocardial infarction", "SNOMED/363418001": "Malignant tumor of pancreas",
    OBESITY: "Obesity", CHEST_PAIN: "Chest pain", CAD: "Coronary arteriosclerosis",
    WEIGHT_LOSS: "Weight loss", JAUNDICE: "Jaundice", HEART_FAILURE: "Heart failure", SEPSIS: "Sepsis",
    "SNOMED/195662009": "Acute viral pharyngitis", "SNOMED/10509002": "Acute bronchitis",
    "SNOMED/279039007": "Low back pain", "SNOMED/235595009": "Gastroesophageal reflux disease",
    "SNOMED/35489007": "Depressive disorder", "SNOMED/367498001": "Seasonal allergic rhinitis",
    "SNOMED/239873007": "Osteoarthritis of knee", "SNOMED/68566005": "Urinary tract infection",
    "SNOMED/233604007": "Pneumonia", "SNOMED/128045006": "Cellulitis", "SNOMED/271594007": "Syncope",
    "RxNorm/7646": "Omeprazole", "RxNorm/5640": "Ibuprofen", "RxNorm/723": "Amoxicillin",
    "RxNorm/36437": "Sertraline", "RxNorm/435": "Albuterol", "RxNorm/28889": "Loratadine",
    "RxNorm/4603": "Furosemide",
    SBP: "Systolic blood pressure", BMI: "Body mass index", LDL: "LDL cholesterol",
    TROPONIN: "Troponin I", LIPASE: "Lipase", "LOINC/718-7": "Hemoglobin", "LOINC/2345-7": "Glucose",
    "LOINC/2160-0": "Creatinine", "LOINC/4548-4": "Hemoglobin A1c",
    "CPT4/93000": "Electrocardiogram", "CPT4/71046": "Chest X-ray, 2 views", "CPT4/80061": "Lipid panel",
    "CPT4/74177": "CT abdomen and pelvis with contrast", "CPT4/36415": "Venipuncture",
    ADMISSION: "Inpatient admission",
}
NOISE_CONDITIONS = ("SNOMED/195662009", "SNOMED/10509002", "SNOMED/279039007", "SNOMED/235595009",
                    "SNOMED/35489007", "SNOMED/367498001", "SNOMED/239873007", "SNOMED/68566005")
NOISE_DRUGS = ("RxNorm/7646", "RxNorm/5640", "RxNorm/723", "RxNorm/36437", "RxNorm/435", "RxNorm/28889")
NOISE_PROCEDURES = ("CPT4/93000", "CPT4/71046", "CPT4/36415")
ADMISSION_REASONS = ("SNOMED/233604007", "SNOMED/128045006", "SNOMED/271594007")
# code, low, high, decimals, unit; the risk-factor labs appear as noise only in their normal range
NORMAL_LABS = ((SBP, 105, 134, 0, "mmHg"), (LDL, 70, 129, 0, "mg/dL"), (TROPONIN, 0.0, 0.02, 2, "ng/mL"),
               (LIPASE, 15, 58, 0, "U/L"), (BMI, 20, 28.9, 1, "kg/m2"), ("LOINC/718-7", 12, 16, 1, "g/dL"),
               ("LOINC/2345-7", 75, 105, 0, "mg/dL"), ("LOINC/2160-0", 0.6, 1.2, 2, "mg/dL"),
               ("LOINC/4548-4", 4.8, 5.6, 1, "%"))
UNITS = {code: unit for code, *_, unit in NORMAL_LABS}

# Rules read back by `risk_factors`: ("code", code, phrase) | ("high", code, threshold, phrase)
# | ("count", code, n, phrase) | ("age", years, phrase)
RULES: dict[str, tuple[tuple, ...]] = {
    "new_hypertension": (("high", SBP, 140, "systolic blood pressure"), ("code", OBESITY, "obesity"),
                         ("high", BMI, 30, "body mass index")),
    "new_hyperlipidemia": (("high", LDL, 160, "LDL cholesterol"),),
    "new_acutemi": (("code", CHEST_PAIN, "chest pain"), ("high", TROPONIN, 0.04, "troponin I"),
                    ("code", CAD, "coronary arteriosclerosis")),
    "new_pancan": (("code", WEIGHT_LOSS, "weight loss"), ("code", JAUNDICE, "jaundice"),
                   ("high", LIPASE, 160, "lipase")),
    "guo_readmission": (("code", HEART_FAILURE, "heart failure"), ("count", ADMISSION, 3, "inpatient admissions")),
    "guo_los": (("code", SEPSIS, "sepsis"), ("age", 75, "age")),
}
SCREENED = {"new_hypertension": "high blood pressure, obesity", "new_hyperlipidemia": "high LDL cholesterol",
            "new_acutemi": "chest pain, raised troponin, coronary disease",
            "new_pancan": "weight loss, jaundice, raised lipase",
            "guo_readmission": "heart failure, repeated admissions", "guo_los": "sepsis, age 75 or older"}


def risk_factors(subtask: str, shown: Sequence[Event], age: int | None) -> list[str]:
    """The screened risk factors of `subtask` among the events a prompt shows, as short phrases."""
    found = []
    for rule in RULES[subtask]:
        if rule[0] == "code" and any(e.code == rule[1] for e in shown):
            found.append(rule[2])
        elif rule[0] == "high":
            values = [e.numeric_value for e in shown if e.code == rule[1] and e.numeric_value is not None
                      and e.numeric_value >= rule[2]]
            if values:
                unit = UNITS.get(rule[1], "")
                found.append(f"{rule[3]} up to {max(values):g} {unit}".strip())
        elif rule[0] == "count":
            n = sum(e.code == rule[1] for e in shown)
            if n >= rule[2]:
                found.append(f"{n} {rule[3]}")
        elif rule[0] == "age" and age is not None and age >= rule[1]:
            found.append(f"{rule[2]} {age}")
    return found


def _value(rng: Random, low: float, high: float, decimals: int) -> float:
    return round(rng.uniform(low, high), decimals)


def _lab(rng: Random, at: datetime, code: str, low: float, high: float, decimals: int = 0) -> Event:
    return Event(at, code, _value(rng, low, high, decimals), UNITS[code])


def _noise(rng: Random, at: datetime) -> Event:
    kind = rng.choice(("condition", "drug", "lab", "lab", "procedure"))
    if kind == "condition":
        return Event(at, rng.choice(NOISE_CONDITIONS))
    if kind == "drug":
        return Event(at, rng.choice(NOISE_DRUGS))
    if kind == "procedure":
        return Event(at, rng.choice(NOISE_PROCEDURES))
    code, low, high, decimals, _ = rng.choice(NORMAL_LABS)
    return _lab(rng, at, code, low, high, decimals)


def _plant_diagnosis_factor(rng: Random, subtask: str, visits: list[datetime]) -> list[Event]:
    a, b = rng.sample(visits, 2)
    m = timedelta(minutes=20)
    if subtask == "new_hypertension":
        out = [_lab(rng, a + m, SBP, 142, 178), _lab(rng, b + m, SBP, 142, 178)]
        if rng.random() < 0.5:
            out += [Event(a + m, OBESITY), _lab(rng, a + m, BMI, 31, 39, 1)]
        return out
    if subtask == "new_hyperlipidemia":
        return [Event(a + m, "CPT4/80061"), _lab(rng, a + 2 * m, LDL, 165, 230)]
    if subtask == "new_acutemi":
        out = [Event(a + m, CHEST_PAIN), _lab(rng, a + 2 * m, TROPONIN, 0.06, 1.5, 2)]
        return out + ([Event(b + m, CAD)] if rng.random() < 0.5 else [])
    out = [Event(a + m, WEIGHT_LOSS), _lab(rng, a + 2 * m, LIPASE, 180, 900)]   # new_pancan
    return out + ([Event(b + m, JAUNDICE)] if rng.random() < 0.5 else [])


def _patient(rng: Random, sid: int, rates: Mapping[str, float]) -> tuple[list[Event], dict[str, Label]]:
    t = datetime(2018, 1, 1, 23, 59) + timedelta(days=rng.randrange(5 * 365))   # new_* prediction time
    age = rng.randint(30, 89)
    birth = datetime(t.year - age, 1, 1) + timedelta(days=rng.randrange(365))
    birth = birth if (birth.month, birth.day) <= (t.month, t.day) else birth.replace(year=birth.year - 1)
    events = [Event(None, f"GENDER/{rng.choice('FM')}"), Event(birth, "MEDS_BIRTH")]
    days = sorted(rng.sample(range(20, 900), rng.randint(2, 3)), reverse=True)
    visits = [(t - timedelta(days=d)).replace(hour=rng.randint(8, 16), minute=0) for d in days]
    for v in visits:
        events += [_noise(rng, v) for _ in range(rng.randint(1, 2))]
    labels = {}
    for subtask in SUBTASKS[:4]:
        y = rng.random() < rates[subtask]
        if rng.random() < FACTOR_P[y]:
            events += _plant_diagnosis_factor(rng, subtask, visits)
        if y:
            events.append(Event(t + timedelta(days=rng.randint(20, 350), hours=-13), OUTCOME_CODES[subtask]))
        labels[subtask] = Label(sid, t, y)
    follow_up = (t + timedelta(days=rng.randint(1, 200))).replace(hour=10, minute=0)
    events.append(_noise(rng, follow_up))
    if rng.random() < 0.5:
        events += _admission(rng, sid, t, rates, labels)
    return events, labels


def _admission(rng: Random, sid: int, t: datetime, rates: Mapping[str, float],
               labels: dict[str, Label]) -> list[Event]:
    """An index admission 60-500 days before `t`: guo_los predicted at 23:59 of its first
    day, guo_readmission at 23:59 of its discharge day."""
    start = (t - timedelta(days=rng.randint(60, 500))).replace(hour=rng.randint(8, 20), minute=0)
    long_stay = rng.random() < rates["guo_los"]
    readmitted = rng.random() < rates["guo_readmission"]
    discharge = start + timedelta(days=rng.randint(7, 14) if long_stay else rng.randint(1, 5))
    h = timedelta(hours=1)
    events = [Event(start, ADMISSION), Event(start + h, rng.choice(ADMISSION_REASONS)),
              _lab(rng, start + 2 * h, "LOINC/718-7", 10, 15, 1),
              Event(start + timedelta(days=1), rng.choice(NOISE_PROCEDURES))]
    if rng.random() < FACTOR_P[long_stay]:
        events.append(Event(start + h, SEPSIS))
    if rng.random() < FACTOR_P[readmitted]:
        events += [Event(start + h, HEART_FAILURE), Event(start + 3 * h, "RxNorm/4603")]
        priors = rng.sample(range(60, 700), 2)
    else:
        priors = rng.sample(range(60, 700), rng.randint(0, 1))
    events += [Event((start - timedelta(days=d)).replace(hour=9), ADMISSION) for d in priors]
    if readmitted:
        events.append(Event(discharge + timedelta(days=rng.randint(3, 27)), ADMISSION))
    labels["guo_los"] = Label(sid, start.replace(hour=23, minute=59), long_stay)
    labels["guo_readmission"] = Label(sid, discharge.replace(hour=23, minute=59), readmitted)
    return events


def generate(n_patients: int, seed: int, base_rates: Mapping[str, float] | None = None) -> Dataset:
    """`n_patients` synthetic patients (subject ids from 10001) with labels for every subtask
    (guo_* only for the half with an admission); no split file, so splits are seeded."""
    rates = {**DEFAULT_BASE_RATES, **(base_rates or {})}
    rng = Random(seed)
    events: dict[int, list[Event]] = {}
    labels: dict[str, list[Label]] = {s: [] for s in SUBTASKS}
    for i in range(n_patients):
        sid = 10_001 + i
        evs, labs = _patient(rng, sid, rates)
        events[sid] = sorted(evs, key=lambda e: (e.time is not None, e.time or datetime.min))
        for subtask, label in labs.items():
            labels[subtask].append(label)
    return Dataset(events, labels, dict(CODES))
