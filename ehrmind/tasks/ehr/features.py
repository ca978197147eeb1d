"""Feature names, units and reference ranges of the TJH and MIMIC-IV cohorts.

TJH (Yan et al. 2020, Tongji Hospital): the release has 73 lab columns (see
/work/shared/reference/tjh_format.md). TJH_LABS lists them in the release's header order.
TJH_SUBSET is the embedded cohort's feature set: 18 of the 73, chosen so that a whole
record (up to 6 visits) fits a ~600-token prompt for a 135M model on CPU. It keeps Yan et
al.'s three decisive labs (lactate dehydrogenase, lymphocyte %, hs-CRP) and adds the routine
panels a clinician reads with them (blood count, chemistry, inflammation, coagulation,
cardiac). Units are the Chinese clinical-laboratory units TJH reports (g/L for hemoglobin and
albumin, mmol/L for urea and glucose, umol/L for creatinine); reference ranges are the usual
adult ranges in those units. Units and ranges are ASCII (fewer tokens, no odd glyphs).
The other 55 TJH labs are read and kept, but print without unit or range (none is recorded
for them here).

MIMIC-IV: the 17 features of the pyehr/ClinicRealm cohort, in the convention's order, with
units as MIMIC-IV charts them (temperature in Celsius, glucose mg/dL, height cm, weight kg).
The Glasgow coma scale items are their numeric scores (eye 1-4, motor 1-6, verbal 1-5,
total 3-15) and capillary refill is 0 (normal, < 3 s) or 1 (slow). A real extract that
one-hot encodes the categorical items has other column names; its features print without
unit or range. Height and weight have no reference range.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str                  # column name in the formatted table
    unit: str                  # "" when the value has no unit (scores, pH)
    low: float | None = None   # reference range; None where there is none
    high: float | None = None

    def normal(self) -> str:
        """The reference range as prompt text: "120-250", "<=0.05" (lower bound 0), "15" (one value)."""
        if self.low is None or self.high is None:
            return ""
        if self.low == self.high:
            return f"{self.low:g}"
        return f"<={self.high:g}" if self.low == 0 else f"{self.low:g}-{self.high:g}"


TJH_LABS = (
    "Hypersensitive cardiac troponinI", "hemoglobin", "Serum chloride", "Prothrombin time", "procalcitonin",
    "eosinophils(%)", "Interleukin 2 receptor", "Alkaline phosphatase", "albumin", "basophil(%)",
    "Interleukin 10", "Total bilirubin", "Platelet count", "monocytes(%)", "antithrombin", "Interleukin 8",
    "indirect bilirubin", "Red blood cell distribution width", "neutrophils(%)", "total protein",
    "Quantification of Treponema pallidum antibodies", "Prothrombin activity", "HBsAg",
    "mean corpuscular volume", "hematocrit", "White blood cell count", "Tumor necrosis factorα",
    "mean corpuscular hemoglobin concentration", "fibrinogen", "Interleukin 1β", "Urea", "lymphocyte count",
    "PH value", "Red blood cell count", "Eosinophil count", "Corrected calcium", "Serum potassium", "glucose",
    "neutrophils count", "Direct bilirubin", "Mean platelet volume", "ferritin", "RBC distribution width SD",
    "Thrombin time", "(%)lymphocyte", "HCV antibody quantification", "D-D dimer", "Total cholesterol",
    "aspartate aminotransferase", "Uric acid", "HCO3-", "calcium",
    "Amino-terminal brain natriuretic peptide precursor(NT-proBNP)", "Lactate dehydrogenase",
    "platelet large cell ratio", "Interleukin 6", "Fibrin degradation products", "monocytes count",
    "PLT distribution width", "globulin", "γ-glutamyl transpeptidase", "International standard ratio",
    "basophil count(#)", "mean corpuscular hemoglobin", "Activation of partial thromboplastin time",
    "High sensitivity C-reactive protein", "HIV antibody quantification", "serum sodium", "thrombocytocrit",
    "ESR", "glutamic-pyruvic transaminase", "eGFR", "creatinine",
)
assert len(TJH_LABS) == 73

LDH, LYMPH_PCT, HS_CRP = "Lactate dehydrogenase", "(%)lymphocyte", "High sensitivity C-reactive protein"

# The embedded TJH-like feature set, in the release's header order.
TJH_SUBSET = (
    Feature("Hypersensitive cardiac troponinI", "pg/mL", 0, 15.6),
    Feature("hemoglobin", "g/L", 130, 175),
    Feature("procalcitonin", "ng/mL", 0, 0.05),
    Feature("albumin", "g/L", 35, 52),
    Feature("Platelet count", "x10^9/L", 125, 350),
    Feature("neutrophils(%)", "%", 40, 75),
    Feature("White blood cell count", "x10^9/L", 3.5, 9.5),
    Feature("Urea", "mmol/L", 3.1, 8.0),
    Feature("lymphocyte count", "x10^9/L", 1.1, 3.2),
    Feature("Serum potassium", "mmol/L", 3.5, 5.1),
    Feature("glucose", "mmol/L", 4.1, 5.9),
    Feature(LYMPH_PCT, "%", 20, 40),
    Feature("D-D dimer", "ug/mL FEU", 0, 0.5),
    Feature(LDH, "U/L", 120, 250),
    Feature("Interleukin 6", "pg/mL", 0, 7),
    Feature(HS_CRP, "mg/L", 0, 1),
    Feature("serum sodium", "mmol/L", 136, 145),
    Feature("creatinine", "umol/L", 57, 111),
)
assert [f.name for f in TJH_SUBSET] == [n for n in TJH_LABS if n in {f.name for f in TJH_SUBSET}]

CRT, GCS_EYE, GCS_MOTOR, GCS_TOTAL, GCS_VERBAL = (
    "Capillary refill rate", "Glascow coma scale eye opening", "Glascow coma scale motor response",
    "Glascow coma scale total", "Glascow coma scale verbal response")
DBP, FIO2, GLUCOSE, HR, HEIGHT, MBP, SPO2, RR, SBP, TEMP, WEIGHT, PH = (
    "Diastolic blood pressure", "Fraction inspired oxygen", "Glucose", "Heart Rate", "Height",
    "Mean blood pressure", "Oxygen saturation", "Respiratory rate", "Systolic blood pressure", "Temperature",
    "Weight", "pH")

MIMIC_FEATURES = (
    Feature(CRT, "0 normal, 1 slow", 0, 0),
    Feature(GCS_EYE, "score 1-4", 4, 4),
    Feature(GCS_MOTOR, "score 1-6", 6, 6),
    Feature(GCS_TOTAL, "score 3-15", 15, 15),
    Feature(GCS_VERBAL, "score 1-5", 5, 5),
    Feature(DBP, "mmHg", 60, 80),
    Feature(FIO2, "fraction", 0.21, 0.21),
    Feature(GLUCOSE, "mg/dL", 70, 140),
    Feature(HR, "bpm", 60, 100),
    Feature(HEIGHT, "cm"),
    Feature(MBP, "mmHg", 70, 100),
    Feature(SPO2, "%", 95, 100),
    Feature(RR, "breaths/min", 12, 20),
    Feature(SBP, "mmHg", 90, 140),
    Feature(TEMP, "C", 36.1, 37.8),
    Feature(WEIGHT, "kg"),
    Feature(PH, "", 7.35, 7.45),
)

KNOWN: dict[str, Feature] = {f.name: f for f in (*TJH_SUBSET, *MIMIC_FEATURES)}


def describe(name: str) -> Feature:
    """The unit and range of a feature; a feature this module does not know has neither."""
    return KNOWN.get(name) or Feature(name, "")
