"""The calculators of the embedded MedCalc-Bench stand-in.

Each calculator samples clinically plausible inputs, writes a short template
note, and computes the answer with a short explanation (formula, values,
result), short because a 135M model is fine-tuned on it on two CPU cores.

Where the `medcalc-bench` package (import name `medcalc`) was checked to be
right, its function gives the ground truth and our own arithmetic, which
writes the explanation, must agree with it (`solve` raises otherwise). Own code
only where the package is wrong (see the notes at each calculator):
  13 due date (adds the gap for cycles < 28 days), 15 Child-Pugh, 27 Glasgow-
  Blatchford (boundary bugs), 51 SIRS (heart rate <= 90 counted, WBC converted
  to m^3), 24 steroids (package rounds potency ratios, e.g. 3.999 for 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from random import Random
from typing import Any, Callable

from ehrmind.tasks.medcalc.scoring import CALCULATORS, format_date

Inputs = dict[str, Any]


@dataclass(frozen=True)
class Calculator:
    id: int
    sample: Callable[[Random], Inputs]                  # clinically plausible inputs
    note: Callable[[Random, Inputs], str]               # 1-3 sentence patient note
    question: Callable[[Inputs], str]
    entities: Callable[[Inputs], dict[str, Any]]        # "Relevant Entities" column
    compute: Callable[[Inputs], tuple[Any, Callable[[str], str]]]  # value, explanation(answer text)
    medcalc: Callable[[Inputs], Any] | None = None      # package answer, where checked right

    @property
    def name(self) -> str:
        return CALCULATORS[self.id][0]

    @property
    def category(self) -> str:
        return CALCULATORS[self.id][1]

    @property
    def output_type(self) -> str:
        return CALCULATORS[self.id][2]


# ---------------------------------------------------------------- helpers
def n(x: float) -> str:
    """A number as written in notes and explanations: 3 decimals at most, no '.0'."""
    r = round(float(x), 3)
    return str(int(r)) if r == int(r) else repr(r)


def total(points: list[float]) -> str:
    """'1 + 2 - 1' for a list of points."""
    out = n(points[0]) if points else "0"
    for p in points[1:]:
        out += f" - {n(-p)}" if p < 0 else f" + {n(p)}"
    return out


def listing(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def person(sex: str, age: int) -> str:
    noun = ("man" if sex == "Male" else "woman") if age >= 18 else ("boy" if sex == "Male" else "girl")
    return f"{age}-year-old {noun}"


def pronoun(sex: str) -> str:
    return "He" if sex == "Male" else "She"


def random_date(r: Random) -> date:
    return date(2000, 1, 1) + timedelta(days=r.randrange(9131))  # 2000-01-01 .. 2024-12-31


def mdy(s: str) -> date:
    m, d, y = (int(p) for p in s.split("/"))
    return date(y, m, d)


def _mc(module: str, func: str, params: Inputs) -> Any:
    """Call medcalc.<module>.<func>(params) and return its 'Answer' (params copied:
    the package fills in defaults in place)."""
    import importlib
    fn = getattr(importlib.import_module(f"medcalc.{module}"), func)
    out = fn(dict(params))
    return out["Answer"] if isinstance(out, dict) else out


# ================================================================ lab
def _ckd_sample(r: Random) -> Inputs:
    return {"age": r.randint(18, 90), "sex": r.choice(["Male", "Female"]),
            "cr": round(r.uniform(0.5, 4.0), r.choice([1, 2]))}


def _ckd_compute(x: Inputs):
    female = x["sex"] == "Female"
    a = 0.7 if female else 0.9
    b = (-0.241 if female else -0.302) if x["cr"] <= a else -1.2
    f = 1.012 if female else 1
    v = 142 * (x["cr"] / a) ** b * 0.9938 ** x["age"] * f
    side = "at most" if x["cr"] <= a else "above"
    return v, lambda ans: (
        f"CKD-EPI 2021: GFR = 142 x (Scr/A)^B x 0.9938^age x F; for a {x['sex'].lower()} with creatinine "
        f"{side} {a} mg/dL, A = {a}, B = {b} and F = {f}. "
        f"142 x ({n(x['cr'])}/{a})^{b} x 0.9938^{x['age']} x {f} = {ans}. The GFR is {ans} mL/min/1.73 m².")


CKD_EPI = Calculator(
    3, _ckd_sample,
    lambda r, x: r.choice([
        f"A {person(x['sex'], x['age'])} has a serum creatinine of {n(x['cr'])} mg/dL.",
        f"{x['age']}-year-old {x['sex'].lower()} seen for routine follow-up of hypertension. "
        f"Creatinine today is {n(x['cr'])} mg/dL.",
        f"The patient is a {person(x['sex'], x['age'])} with type 2 diabetes. "
        f"Basic metabolic panel: creatinine {n(x['cr'])} mg/dL, otherwise unremarkable.",
    ]),
    lambda x: "What is the patient's GFR in mL/min/1.73 m² by the 2021 CKD-EPI creatinine equation?",
    lambda x: {"age": [x["age"], "years"], "creatinine": [x["cr"], "mg/dL"], "sex": x["sex"]},
    _ckd_compute,
    # The plain function is right; ckd_epi_2021_explanation uses A = 0.7 for men with Scr <= 0.9.
    lambda x: _mc("ckd_epi_2021_creatinine", "ckd_epi_2021",
                  {"sex": x["sex"], "age": (x["age"], "years"), "creatinine": (x["cr"], "mg/dL")}),
)


def _ag_sample(r: Random) -> Inputs:
    while True:
        x = {"na": r.randint(128, 150), "cl": r.randint(92, 112), "hco3": r.randint(8, 30)}
        if 3 <= x["na"] - x["cl"] - x["hco3"] <= 35:
            return x


ANION_GAP = Calculator(
    39, _ag_sample,
    lambda r, x: r.choice([
        f"Labs: sodium {x['na']} mEq/L, chloride {x['cl']} mEq/L, bicarbonate {x['hco3']} mEq/L.",
        f"A patient with vomiting has a serum sodium of {x['na']} mEq/L, chloride of {x['cl']} mEq/L "
        f"and bicarbonate of {x['hco3']} mEq/L.",
        f"Chemistry panel on admission shows Na {x['na']}, Cl {x['cl']} and HCO3 {x['hco3']} mEq/L.",
    ]),
    lambda x: "What is the patient's anion gap in mEq/L?",
    lambda x: {"Sodium": [x["na"], "mEq/L"], "Chloride": [x["cl"], "mEq/L"], "Bicarbonate": [x["hco3"], "mEq/L"]},
    lambda x: (x["na"] - (x["cl"] + x["hco3"]), lambda ans: (
        f"Anion gap = sodium - (chloride + bicarbonate). "
        f"{x['na']} - ({x['cl']} + {x['hco3']}) = {ans}. The anion gap is {ans} mEq/L.")),
    lambda x: _mc("anion_gap", "compute_anion_gap_explanation", {
        "sodium": (x["na"], "mEq/L"), "chloride": (x["cl"], "mEq/L"), "bicarbonate": (x["hco3"], "mEq/L")}),
)


def _osm_sample(r: Random) -> Inputs:
    return {"na": r.randint(125, 155), "bun": r.randint(6, 80), "glu": r.randint(65, 450)}


SERUM_OSM = Calculator(
    30, _osm_sample,
    lambda r, x: r.choice([
        f"Labs: sodium {x['na']} mmol/L, BUN {x['bun']} mg/dL, glucose {x['glu']} mg/dL.",
        f"A confused patient has a serum sodium of {x['na']} mmol/L, blood urea nitrogen of "
        f"{x['bun']} mg/dL and glucose of {x['glu']} mg/dL.",
        f"Admission chemistry: Na {x['na']} mmol/L, BUN {x['bun']} mg/dL, glucose {x['glu']} mg/dL.",
    ]),
    lambda x: "What is the patient's calculated serum osmolality in mOsm/kg?",
    lambda x: {"Sodium": [x["na"], "mmol/L"], "Blood Urea Nitrogen (BUN)": [x["bun"], "mg/dL"],
               "Glucose": [x["glu"], "mg/dL"]},
    lambda x: (2 * x["na"] + x["bun"] / 2.8 + x["glu"] / 18, lambda ans: (
        f"Serum osmolality = 2 x sodium + BUN/2.8 + glucose/18 (sodium in mmol/L, BUN and glucose in mg/dL). "
        f"2 x {x['na']} + {x['bun']}/2.8 + {x['glu']}/18 = {ans}. The serum osmolality is {ans} mOsm/kg.")),
    lambda x: _mc("sOsm", "compute_serum_osmolality_explanation", {
        "sodium": (x["na"], "mmol/L"), "bun": (x["bun"], "mg/dL"), "glucose": (x["glu"], "mg/dL")}),
)


# ================================================================ physical
def _qtc_compute(x: Inputs):
    rr = round(60 / x["hr"], 3)  # MedCalc rounds RR to 3 decimals before the square root
    return x["qt"] / math.sqrt(rr), lambda ans: (
        f"Bazett: QTc = QT / √RR, where RR = 60 / heart rate in seconds. "
        f"RR = 60/{x['hr']} = {n(rr)} s, so QTc = {x['qt']}/√{n(rr)} = {ans}. The corrected QT is {ans} msec.")


QTC_BAZETT = Calculator(
    11, lambda r: {"hr": r.randint(45, 130), "qt": r.randrange(300, 521, 2)},
    lambda r, x: r.choice([
        f"Patient has a heart rate of {x['hr']} bpm and a QT interval of {x['qt']} msec.",
        f"ECG shows sinus rhythm at {x['hr']} beats per minute with a QT interval of {x['qt']} ms.",
        f"On telemetry the heart rate is {x['hr']}/min; the measured QT is {x['qt']} msec.",
    ]),
    lambda x: "What is the patient's corrected QT interval in msec by the Bazett formula?",
    lambda x: {"Heart Rate or Pulse": [x["hr"], "beats per minute"], "QT interval": [x["qt"], "msec"]},
    _qtc_compute,
    lambda x: _mc("qt_calculator_bazett", "bazett_calculator_explanation", {
        "heart_rate": (x["hr"], "beats per minute"), "qt_interval": (x["qt"], "msec")}),
)


def _map_sample(r: Random) -> Inputs:
    s = r.randint(85, 200)
    return {"sbp": s, "dbp": r.randint(max(40, s // 2 - 10), min(120, s - 20))}


MAP = Calculator(
    5, _map_sample,
    lambda r, x: r.choice([
        f"Blood pressure is {x['sbp']}/{x['dbp']} mm Hg.",
        f"At triage the patient's blood pressure was {x['sbp']}/{x['dbp']} mmHg and the patient was afebrile.",
        f"Vitals: BP {x['sbp']}/{x['dbp']} mm Hg, pulse regular.",
    ]),
    lambda x: "What is the patient's mean arterial pressure in mm Hg?",
    lambda x: {"Systolic Blood Pressure": [x["sbp"], "mm Hg"], "Diastolic Blood Pressure": [x["dbp"], "mm Hg"]},
    lambda x: (2 * x["dbp"] / 3 + x["sbp"] / 3, lambda ans: (
        f"MAP = 2/3 x diastolic pressure + 1/3 x systolic pressure. "
        f"2/3 x {x['dbp']} + 1/3 x {x['sbp']} = {ans}. The mean arterial pressure is {ans} mm Hg.")),
    lambda x: _mc("mean_arterial_pressure", "mean_arterial_pressure_explanation", {
        "sys_bp": (x["sbp"], "mm Hg"), "dia_bp": (x["dbp"], "mm Hg")}),
)


def _bmi_compute(x: Inputs):
    hm = round(x["h"] / 100, 3)
    return x["w"] / (hm * hm), lambda ans: (
        f"BMI = weight in kg / (height in m)². The height is {x['h']} cm = {n(hm)} m, "
        f"so BMI = {n(x['w'])} / ({n(hm)} x {n(hm)}) = {ans}. The BMI is {ans} kg/m².")


BMI = Calculator(
    6, lambda r: {"h": r.randint(148, 198), "w": round(r.uniform(42, 140), r.choice([0, 1]))},
    lambda r, x: r.choice([
        f"The patient is {x['h']} cm tall and weighs {n(x['w'])} kg.",
        f"Height {x['h']} cm, weight {n(x['w'])} kg.",
        f"At the wellness visit the patient weighed {n(x['w'])} kg and measured {x['h']} cm in height.",
    ]),
    lambda x: "What is the patient's body mass index (BMI) in kg/m²?",
    lambda x: {"weight": [x["w"], "kg"], "height": [x["h"], "cm"]},
    _bmi_compute,
    lambda x: _mc("bmi_calculator", "bmi_calculator_explanation", {
        "height": (x["h"], "cm"), "weight": (x["w"], "kg")}),
)


# ================================================================ risk
_GBS_HISTORY = {"syncope": "fainted at home", "hepatic": "has cirrhosis", "cardiac": "has heart failure"}


def _gbs_sample(r: Random) -> Inputs:
    return {"age": r.randint(25, 90), "sex": r.choice(["Male", "Female"]), "hb": round(r.uniform(6.5, 16.5), 1),
            "bun": r.randint(8, 90), "sbp": r.randint(78, 160), "hr": r.randint(60, 135),
            "melena": r.random() < 0.6, "syncope": r.random() < 0.3, "hepatic": r.random() < 0.3,
            "cardiac": r.random() < 0.25}


def _gbs_note(r: Random, x: Inputs) -> str:
    he = pronoun(x["sex"])
    sign = "black, tarry stools" if x["melena"] else "vomiting blood without melena"
    hist = [v for k, v in _GBS_HISTORY.items() if x[k]]
    hist_s = f"{he} {listing(hist)}." if hist else f"{he} has not fainted and has no liver or heart disease."
    return (f"A {person(x['sex'], x['age'])} presents with {sign}. {hist_s} Heart rate {x['hr']} bpm, "
            f"blood pressure {x['sbp']}/{max(40, x['sbp'] // 2 + r.randint(-5, 10))} mm Hg; "
            f"hemoglobin {n(x['hb'])} g/dL, BUN {x['bun']} mg/dL.")


def _gbs_compute(x: Inputs):
    # Glasgow-Blatchford (MDCalc): BUN in mg/dL; hemoglobin cut-offs depend on sex.
    bun = x["bun"]
    p_bun = 6 if bun >= 70 else 4 if bun >= 28 else 3 if bun >= 22.4 else 2 if bun >= 18.2 else 0
    hb = x["hb"]
    if x["sex"] == "Male":
        p_hb = 0 if hb >= 13 else 1 if hb >= 12 else 3 if hb >= 10 else 6
    else:
        p_hb = 0 if hb >= 12 else 1 if hb >= 10 else 6
    sbp = x["sbp"]
    p_sbp = 0 if sbp >= 110 else 1 if sbp >= 100 else 2 if sbp >= 90 else 3
    items = [(f"BUN {bun} mg/dL", p_bun), (f"hemoglobin {n(hb)} g/dL in a {x['sex'].lower()}", p_hb),
             (f"systolic BP {sbp} mm Hg", p_sbp), (f"heart rate {x['hr']}", int(x["hr"] >= 100)),
             ("melena", int(x["melena"])), ("syncope", 2 * x["syncope"]),
             ("hepatic disease", 2 * x["hepatic"]), ("cardiac failure", 2 * x["cardiac"])]
    scored = [(k, p) for k, p in items if p]
    score = sum(p for _, p in scored)

    def explain(ans: str) -> str:
        if not scored:
            return f"Glasgow-Blatchford: no item scores points, so the score is {ans}."
        parts = ", ".join(f"{k} +{p}" for k, p in scored)
        return (f"Glasgow-Blatchford points: {parts}; all other items score 0. "
                f"Total = {total([p for _, p in scored])} = {ans}.")
    return score, explain


GBS = Calculator(
    27, _gbs_sample, _gbs_note,
    lambda x: "What is the patient's Glasgow-Blatchford Bleeding Score?",
    lambda x: {"sex": x["sex"], "Hemoglobin": [x["hb"], "g/dL"], "Blood Urea Nitrogen (BUN)": [x["bun"], "mg/dL"],
               "Systolic Blood Pressure": [x["sbp"], "mm Hg"], "Heart Rate or Pulse": [x["hr"], "beats per minute"],
               "Melena present": x["melena"], "Recent syncope": x["syncope"],
               "Hepatic disease history": x["hepatic"], "Cardiac failure present": x["cardiac"]},
    _gbs_compute,
    None,  # package: male Hb 12.0 -> 0 and 13.0 -> 1, female Hb 10.0 -> 0 and 12.0 -> 1, BUN 70 -> 0
)

_WELLS = [("dvt", "clinical signs of DVT", 3, "has a swollen, tender calf"),
          ("pe_likely", "PE as the most likely diagnosis", 3, "is thought most likely to have a PE"),
          ("immob", "immobilization or recent surgery", 1.5, "had surgery two weeks ago"),
          ("prior", "previous PE or DVT", 1.5, "had a DVT in the past"),
          ("hemoptysis", "hemoptysis", 1, "is coughing up blood"),
          ("cancer", "malignancy", 1, "is on chemotherapy for cancer")]


def _wells_sample(r: Random) -> Inputs:
    x = {k: r.random() < 0.3 for k, *_ in _WELLS}
    x.update(age=r.randint(20, 85), sex=r.choice(["Male", "Female"]), hr=r.randint(62, 130))
    return x


def _wells_note(r: Random, x: Inputs) -> str:
    he = pronoun(x["sex"])
    pos = [phrase for k, _, _, phrase in _WELLS if x[k]]
    rest = (f"{he} {listing(pos)}." if pos else
            f"{he} has no DVT signs, recent surgery, prior clots, hemoptysis or cancer, "
            "and another diagnosis is more likely.")
    return (f"A {person(x['sex'], x['age'])} presents with acute dyspnea and pleuritic chest pain; "
            f"heart rate is {x['hr']} bpm. {rest}")


def _wells_compute(x: Inputs):
    items = [(label, pts, x[k]) for k, label, pts, _ in _WELLS]
    items.insert(2, (f"heart rate {x['hr']} > 100", 1.5, x["hr"] > 100))
    scored = [(label, pts) for label, pts, present in items if present]
    v = float(sum(p for _, p in scored))

    def explain(ans: str) -> str:
        if not scored:
            return f"Wells' criteria for PE: no criterion is present, so the score is {ans}."
        parts = ", ".join(f"{k} +{n(p)}" for k, p in scored)
        return (f"Wells' criteria for PE: {parts}; all other criteria score 0. "
                f"Total = {total([p for _, p in scored])} = {ans}.")
    return v, explain


WELLS_PE = Calculator(
    8, _wells_sample, _wells_note,
    lambda x: "What is the patient's score on Wells' criteria for pulmonary embolism?",
    lambda x: {"Heart Rate or Pulse": [x["hr"], "beats per minute"],
               "Clinical signs and symptoms of Deep Vein Thrombosis": x["dvt"],
               "Pulmonary Embolism is #1 diagnosis OR equally likely": x["pe_likely"],
               "Surgery in the previous 4 weeks": x["immob"], "Previously documented Deep Vein Thrombosis": x["prior"],
               "Hemoptysis": x["hemoptysis"], "Malignancy with treatment within 6 months or palliative": x["cancer"]},
    _wells_compute,
    lambda x: _mc("wells_criteria_pe", "calculate_pe_wells_explanation", {
        "heart_rate": (x["hr"], "beats per minute"), "clinical_dvt": x["dvt"], "pe_number_one": x["pe_likely"],
        "surgery_in_past4weeks": x["immob"], "previous_dvt": x["prior"], "hemoptysis": x["hemoptysis"],
        "malignancy_with_treatment": x["cancer"]}),
)


# ================================================================ severity
def _centor_sample(r: Random) -> Inputs:
    return {"age": r.choice([r.randint(3, 14), r.randint(15, 44), r.randint(45, 80)]),
            "sex": r.choice(["Male", "Female"]), "temp": round(r.uniform(36.5, 40.0), 1),
            "no_cough": r.random() < 0.5, "nodes": r.random() < 0.5, "exudate": r.random() < 0.5}


def _centor_note(r: Random, x: Inputs) -> str:
    he = pronoun(x["sex"])
    exam = [("tonsillar exudates" if x["exudate"] else "no tonsillar exudate or swelling"),
            ("tender anterior cervical lymph nodes" if x["nodes"] else "no cervical lymphadenopathy")]
    cough = "denies cough" if x["no_cough"] else "also has a cough"
    return (f"A {person(x['sex'], x['age'])} has a sore throat and a temperature of {n(x['temp'])} °C. "
            f"{he} {cough}. Examination shows {listing(exam)}.")


def _centor_compute(x: Inputs):
    age = x["age"]
    pts = [1 if 3 <= age <= 14 else -1 if age >= 45 else 0, int(x["temp"] > 38),
           int(x["no_cough"]), int(x["nodes"]), int(x["exudate"])]
    labels = [f"age {age}", f"temperature {n(x['temp'])} °C", "cough absent",
              "tender/swollen anterior cervical nodes", "tonsillar exudate or swelling"]
    return sum(pts), lambda ans: (
        "Centor (McIsaac) points: " + ", ".join(f"{k} {'+' if p >= 0 else ''}{p}" for k, p in zip(labels, pts))
        + f". Total = {total(pts)} = {ans}.")


CENTOR = Calculator(
    20, _centor_sample, _centor_note,
    lambda x: "What is the patient's Centor (McIsaac) score?",
    lambda x: {"age": [x["age"], "years"], "Temperature": [x["temp"], "degrees celsius"], "Cough Absent": x["no_cough"],
               "Tender/swollen anterior cervical lymph nodes": x["nodes"],
               "Exudate or swelling on tonsils": x["exudate"]},
    _centor_compute,
    lambda x: _mc("centor_score", "compute_centor_score_explanation", {
        "age": (x["age"], "years"), "temperature": (x["temp"], "degrees celsius"), "cough_absent": x["no_cough"],
        "tender_lymph_nodes": x["nodes"], "exudate_swelling_tonsils": x["exudate"]}),
)

_ASCITES = {"Absent": "there is no ascites", "Slight": "slight ascites is seen on ultrasound",
            "Moderate": "moderate ascites is present"}
_ENCEPH = {"No Encephalopathy": "no encephalopathy", "Grade 1-2": "grade 1-2 encephalopathy",
           "Grade 3-4": "grade 3-4 encephalopathy"}


def _cp_sample(r: Random) -> Inputs:
    return {"age": r.randint(30, 80), "sex": r.choice(["Male", "Female"]), "bili": round(r.uniform(0.4, 6.0), 1),
            "alb": round(r.uniform(1.9, 4.6), 1), "inr": round(r.uniform(0.9, 3.4), 1),
            "ascites": r.choice(list(_ASCITES)), "enceph": r.choice(list(_ENCEPH))}


def _cp_compute(x: Inputs):
    # MDCalc cut-offs: bilirubin <2 / 2-3 / >3 mg/dL, albumin >3.5 / 2.8-3.5 / <2.8 g/dL, INR <1.7 / 1.7-2.3 / >2.3.
    b, a, inr = x["bili"], x["alb"], x["inr"]
    pts = [1 if b < 2 else 2 if b <= 3 else 3, 1 if a > 3.5 else 2 if a >= 2.8 else 3,
           1 if inr < 1.7 else 2 if inr <= 2.3 else 3,
           list(_ASCITES).index(x["ascites"]) + 1, list(_ENCEPH).index(x["enceph"]) + 1]
    labels = [f"bilirubin {n(b)} mg/dL", f"albumin {n(a)} g/dL", f"INR {n(inr)}",
              f"ascites {x['ascites'].lower()}",
              f"encephalopathy {x['enceph'].replace('No Encephalopathy', 'none').lower()}"]
    return sum(pts), lambda ans: (
        "Child-Pugh points: " + ", ".join(f"{k} +{p}" for k, p in zip(labels, pts))
        + f". Total = {total(pts)} = {ans}.")


CHILD_PUGH = Calculator(
    15, _cp_sample,
    lambda r, x: (f"A {person(x['sex'], x['age'])} with cirrhosis has total bilirubin {n(x['bili'])} mg/dL, "
                  f"albumin {n(x['alb'])} g/dL and INR {n(x['inr'])}. On examination {_ASCITES[x['ascites']]}, "
                  f"and {pronoun(x['sex']).lower()} has {_ENCEPH[x['enceph']]}."),
    lambda x: "What is the patient's Child-Pugh score?",
    lambda x: {"Bilirubin": [x["bili"], "mg/dL"], "Albumin": [x["alb"], "g/dL"],
               "international normalized ratio": x["inr"],
               "Ascites": x["ascites"], "Encephalopathy": x["enceph"]},
    _cp_compute,
    None,  # package: bilirubin 2.0 -> 0 points and 3.0 -> 3, albumin 2.8 -> 3
)


# ================================================================ diagnosis
def _sirs_sample(r: Random) -> Inputs:
    return {"age": r.randint(18, 90), "sex": r.choice(["Male", "Female"]), "temp": round(r.uniform(35.0, 40.2), 1),
            "hr": r.randint(58, 135), "rr": r.randint(12, 32), "wbc": r.randrange(1500, 24001, 100)}


def _sirs_compute(x: Inputs):
    t, hr, rr, wbc = x["temp"], x["hr"], x["rr"], x["wbc"]
    crit = [(f"temperature {n(t)} °C (>38 or <36)", t > 38 or t < 36), (f"heart rate {hr} (>90)", hr > 90),
            (f"respiratory rate {rr} (>20)", rr > 20),
            (f"WBC {wbc}/mm³ (>12,000 or <4,000)", wbc > 12000 or wbc < 4000)]
    met = sum(ok for _, ok in crit)
    return met, lambda ans: (
        "SIRS criteria: " + ", ".join(f"{k} {'met' if ok else 'not met'}" for k, ok in crit)
        + f". The number of criteria met is {ans}.")


SIRS = Calculator(
    51, _sirs_sample,
    lambda r, x: r.choice([
        f"A {person(x['sex'], x['age'])} is evaluated for possible infection. Temperature {n(x['temp'])} °C, "
        f"heart rate {x['hr']} bpm, respiratory rate {x['rr']}/min. WBC count is {x['wbc']}/mm³.",
        f"Vitals: T {n(x['temp'])} °C, HR {x['hr']}, RR {x['rr']}. Labs show a white cell count of {x['wbc']}/µL.",
    ]),
    lambda x: "How many SIRS criteria does the patient meet?",
    lambda x: {"Temperature": [x["temp"], "degrees celsius"], "Heart Rate or Pulse": [x["hr"], "beats per minute"],
               "respiratory rate": [x["rr"], "breaths per minute"], "White blood cell count": [x["wbc"], "µL"]},
    _sirs_compute,
    None,  # package: heart rate <= 90 still counts, WBC per µL converted to m^3 (always > 12,000)
)

_PERC = [("leg", "unilateral leg swelling", "unilateral leg swelling"), ("hemoptysis", "hemoptysis", "hemoptysis"),
         ("surgery", "recent surgery or trauma", "surgery in the last 4 weeks"),
         ("prior", "prior PE or DVT", "a prior DVT"), ("hormone", "hormone use", "oral contraceptive use")]


def _perc_sample(r: Random) -> Inputs:
    x = {k: r.random() < 0.25 for k, *_ in _PERC}
    x.update(age=r.randint(18, 85), sex=r.choice(["Male", "Female"]), hr=r.randint(60, 125), sat=r.randint(88, 100))
    if x["sex"] == "Male":
        x["hormone"] = False
    return x


def _perc_note(r: Random, x: Inputs) -> str:
    he = pronoun(x["sex"])
    pos = [p for k, _, p in _PERC if x[k]]
    neg = [p for k, _, p in _PERC if not x[k] and k != "hormone"]
    parts = []
    if pos:
        parts.append(f"{he} reports {listing(pos)}.")
    if neg:
        parts.append(f"{he} denies {listing(neg).replace(' and ', ' or ')}.")
    return (f"A {person(x['sex'], x['age'])} presents with shortness of breath; heart rate {x['hr']} bpm, "
            f"oxygen saturation {x['sat']}% on room air. " + " ".join(parts))


def _perc_compute(x: Inputs):
    met = [f"age {x['age']}"] if x["age"] >= 50 else []
    met += [f"heart rate {x['hr']}"] if x["hr"] >= 100 else []
    met += [f"SaO2 {x['sat']}%"] if x["sat"] < 95 else []
    met += [label for k, label, _ in _PERC if x[k]]
    return len(met), lambda ans: (
        "PERC counts one point each for age >= 50, heart rate >= 100, SaO2 < 95%, unilateral leg swelling, "
        f"hemoptysis, recent surgery or trauma, prior PE or DVT, and hormone use. "
        f"Met here: {listing(met) if met else 'none'}. The count is {ans}.")


PERC = Calculator(
    48, _perc_sample, _perc_note,
    lambda x: "How many PERC rule criteria for pulmonary embolism does the patient meet?",
    lambda x: {"age": [x["age"], "years"], "Heart Rate or Pulse": [x["hr"], "beats per minute"],
               "O₂ saturation percentage": [x["sat"], "%"], "Unilateral Leg Swelling": x["leg"],
               "Hemoptysis": x["hemoptysis"], "Recent surgery or trauma": x["surgery"],
               "Previously documented Deep Vein Thrombosis": x["prior"], "Hormone use": x["hormone"]},
    _perc_compute,
    lambda x: _mc("perc_rule", "compute_perc_rule_explanation", {
        "age": (x["age"], "years"), "heart_rate": (x["hr"], "beats per minute"), "oxygen_sat": (x["sat"], "%"),
        "unilateral_leg_swelling": x["leg"], "hemoptysis": x["hemoptysis"], "recent_surgery_or_trauma": x["surgery"],
        "previous_dvt": x["prior"], "previous_pe": False, "hormonal_use": x["hormone"]}),
)


# ================================================================ dosage
# Equivalent doses in mg (MDCalc steroid conversion table).
_STEROIDS = {"Betamethasone IV": 0.75, "Cortisone PO": 25, "Dexamethasone IV": 0.75, "Dexamethasone PO": 0.75,
             "Hydrocortisone IV": 20, "Hydrocortisone PO": 20, "MethylPrednisoLONE IV": 4, "MethylPrednisoLONE PO": 4,
             "PrednisoLONE PO": 5, "PredniSONE PO": 5, "Triamcinolone IV": 4}


def _steroid_sample(r: Random) -> Inputs:
    src = r.choice(list(_STEROIDS))
    dst = r.choice([s for s in _STEROIDS if s.split()[0] != src.split()[0]])
    return {"src": src, "dst": dst, "dose": round(_STEROIDS[src] * r.choice([0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10]), 2)}


def _steroid_compute(x: Inputs):
    a, b = _STEROIDS[x["src"]], _STEROIDS[x["dst"]]
    return x["dose"] * b / a, lambda ans: (
        f"{n(a)} mg of {x['src']} is equivalent to {n(b)} mg of {x['dst']}. "
        f"{n(x['dose'])} mg x {n(b)}/{n(a)} = {ans}. The equivalent dose is {ans} mg of {x['dst']}.")


STEROID = Calculator(
    24, _steroid_sample,
    lambda r, x: r.choice([f"Patient has taken {n(x['dose'])} mg of {x['src']}.",
                           f"The patient's current steroid is {x['src']} {n(x['dose'])} mg.",
                           f"{x['src']} {n(x['dose'])} mg was given this morning."]),
    lambda x: f"What is the equivalent dose of {x['dst']} in mg for the patient's dose of {x['src']}?",
    lambda x: {"input steroid": [x["src"], x["dose"], "mg"], "target steroid": x["dst"]},
    _steroid_compute,
    None,  # package rounds potency ratios (prednisone -> hydrocortisone 3.999 instead of 4)
)

# MME conversion factors (CDC 2022, as in MDCalc and the package) and usual unit doses in mg.
_OPIOIDS = {"Codeine": (0.15, [15, 30, 60]), "HYDROcodone": (1, [5, 7.5, 10]), "HYDROmorphone": (5, [2, 4]),
            "Morphine": (1, [15, 30]), "OxyCODONE": (1.5, [5, 10, 15]), "OxyMORphone": (3, [5, 10]),
            "Tapentadol": (0.4, [50, 100]), "TraMADol": (0.2, [50, 100])}


def _mme_sample(r: Random) -> Inputs:
    drugs = r.sample(sorted(_OPIOIDS), r.choice([1, 1, 2]))
    return {"drugs": [(d, r.choice(_OPIOIDS[d][1]), r.randint(1, 4)) for d in drugs]}


def _mme_compute(x: Inputs):
    terms = [(d, dose, k, dose * k * _OPIOIDS[d][0]) for d, dose, k in x["drugs"]]
    parts = "; ".join(f"{d}: {n(dose)} mg x {k}/day x {n(_OPIOIDS[d][0])} = {n(v)}" for d, dose, k, v in terms)
    return sum(v for *_, v in terms), lambda ans: (
        f"MME/day = dose x doses per day x conversion factor, summed over opioids. {parts}. "
        f"Total = {ans} MME/day.")


MME = Calculator(
    49, _mme_sample,
    lambda r, x: "The patient takes " + listing([f"{d} {n(dose)} mg {k} time{'s' if k > 1 else ''} a day"
                                                 for d, dose, k in x["drugs"]]) + ".",
    lambda x: "What is the patient's total daily Morphine Milligram Equivalents (MME)?",
    lambda x: {k: v for d, dose, t in x["drugs"]
               for k, v in ((f"{d} Dose", [dose, "mg"]), (f"{d} Dose Per Day", [t, "per day"]))},
    _mme_compute,
    lambda x: _mc("mme", "mme_explanation", {k: tuple(v) for d, dose, t in x["drugs"] for k, v in (
        (f"{d} Dose", (dose, "mg")), (f"{d} Dose Per Day", (t, "per day")))}),
)


# ================================================================ date
_DATE_FMT = "Answer with the date only, formatted M/D/Y (for example 08/31/2023)."


def _lmp_note(r: Random, x: Inputs) -> str:
    return r.choice([f"The patient's last menstrual period began on {x['lmp']}. Her cycles last {x['cycle']} days.",
                     f"LMP: {x['lmp']}. Cycle length: {x['cycle']} days.",
                     f"She reports a last menstrual period of {x['lmp']} and a usual cycle of {x['cycle']} days."])


def _due_compute(x: Inputs):
    # Naegele's rule with cycle correction: LMP + 280 days + (cycle - 28) days.
    # (The package adds |cycle - 28| for short cycles too, giving a later date.)
    d40 = mdy(x["lmp"]) + timedelta(days=280)
    gap = x["cycle"] - 28
    adj = ("no adjustment is needed" if gap == 0 else
           f"we {'add' if gap > 0 else 'subtract'} {abs(gap)} days")
    return format_date(d40 + timedelta(days=gap)), lambda ans: (
        f"Naegele's rule: due date = last menstrual period + 280 days + (cycle length - 28) days. "
        f"{x['lmp']} + 280 days = {format_date(d40)}; the cycle is {x['cycle']} days, so {adj}. "
        f"The estimated due date is {ans}.")


DUE_DATE = Calculator(
    13, lambda r: {"lmp": format_date(random_date(r)), "cycle": r.randint(21, 35)}, _lmp_note,
    lambda x: f"Using Naegele's rule adjusted for cycle length, what is the patient's estimated due date? {_DATE_FMT}",
    lambda x: {"cycle length": x["cycle"], "Last menstrual date": x["lmp"]},
    _due_compute,
    None,
)

CONCEPTION = Calculator(
    68, lambda r: {"lmp": format_date(random_date(r)), "cycle": r.randint(21, 35)}, _lmp_note,
    lambda x: f"Based on her last menstrual period, what is the patient's estimated date of conception? {_DATE_FMT}",
    lambda x: {"cycle length": x["cycle"], "Last menstrual date": x["lmp"]},
    # MedCalc-Bench defines conception as LMP + 2 weeks whatever the cycle length.
    lambda x: (format_date(mdy(x["lmp"]) + timedelta(days=14)), lambda ans: (
        f"The estimated date of conception is the last menstrual period plus 2 weeks (14 days). "
        f"{x['lmp']} + 14 days = {ans}.")),
    lambda x: _mc("conception_date", "add_2_weeks_explanation",
                  {"cycle_length": x["cycle"], "menstrual_date": x["lmp"]}),
)


def _ga_sample(r: Random) -> Inputs:
    lmp = random_date(r)
    return {"lmp": format_date(lmp), "today": format_date(lmp + timedelta(days=r.randint(1, 294)))}


def _ga_compute(x: Inputs):
    days = (mdy(x["today"]) - mdy(x["lmp"])).days
    w, d = divmod(days, 7)
    return (w, d), lambda ans: (
        f"Gestational age is the time from the last menstrual period to today. From {x['lmp']} to {x['today']} "
        f"is {days} days, and {days} = {w} x 7 + {d}. The gestational age is ({w} weeks, {d} days).")


def _ga_medcalc(x: Inputs) -> tuple[int, int]:
    w, d = _mc("gestational_age", "compute_gestational_age_explanation",
               {"current_date": x["today"], "menstrual_date": x["lmp"]})  # ('16 weeks', '1 days')
    return int(w.split()[0]), int(d.split()[0])


GESTATIONAL_AGE = Calculator(
    69, _ga_sample,
    lambda r, x: r.choice([f"The patient's last menstrual period began on {x['lmp']}. Today is {x['today']}.",
                           f"LMP {x['lmp']}; today's date is {x['today']}.",
                           f"Her last period started on {x['lmp']}, and she is seen in clinic on {x['today']}."]),
    lambda x: ("What is the patient's estimated gestational age based on her last menstrual period? "
               "Answer as a tuple of weeks and days, for example (4 weeks, 3 days) or (0 weeks, 5 days)."),
    lambda x: {"Current Date": x["today"], "Last menstrual date": x["lmp"]},
    _ga_compute,
    _ga_medcalc,
)


ALL: tuple[Calculator, ...] = (CKD_EPI, ANION_GAP, SERUM_OSM, QTC_BAZETT, MAP, BMI, GBS, WELLS_PE, CENTOR,
                               CHILD_PUGH, SIRS, PERC, STEROID, MME, DUE_DATE, CONCEPTION, GESTATIONAL_AGE)
BY_CATEGORY: dict[str, tuple[Calculator, ...]] = {}
for _c in ALL:
    BY_CATEGORY[_c.category] = BY_CATEGORY.get(_c.category, ()) + (_c,)
CATEGORIES = tuple(BY_CATEGORY)  # lab, physical, risk, severity, diagnosis, dosage, date


def answer_text(value: Any, output_type: str, calculator_id: int) -> str:
    """The value as the CSV stores it: '88.199', '7', '09/23/2014', "('0 weeks', '6 days')"."""
    if calculator_id == 69:
        return str((f"{value[0]} weeks", f"{value[1]} days"))
    if output_type == "decimal":
        return repr(round(float(value), 3))
    if output_type == "integer":
        return str(int(value))
    return str(value)


def solve(calc: Calculator, x: Inputs) -> tuple[str, str]:
    """(ground truth as CSV text, explanation). The answer is medcalc's where the
    package is used, and must agree with our own arithmetic, which the
    explanation shows."""
    own, explain = calc.compute(x)
    ans = own
    if calc.medcalc is not None:
        ans = calc.medcalc(x)
        same = abs(float(ans) - float(own)) < 2e-3 if calc.output_type == "decimal" else ans == own
        if not same:
            raise AssertionError(f"calculator {calc.id}: medcalc gives {ans!r}, own code {own!r} for {x}")
    text = answer_text(ans, calc.output_type, calc.id)
    return text, explain(text)
