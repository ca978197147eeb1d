"""MedCalc-Bench correctness rules, re-implemented without `eval`.

The public scorer `eval()`s model text; here answers are only matched with
regular expressions and converted with `float`/`int`, so any input is safe.

Official rules (MedCalc-Bench evaluation/run.py), chosen by calculator ID:
  13, 68  date          exact calendar date match (m/d/Y)
  69      weeks_days    exact (weeks, days) match
  others  integer       round(answer) == ground truth
          decimal       Lower Limit <= answer <= Upper Limit
"""
from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from ehrmind.tasks.base import Score

# All 55 calculators of MedCalc-Bench v1.0: ID -> (name, category, output type).
# IDs/names: calculator_implementations/calc_path.json; output types: the
# integer/decimal ID lists of evaluation/run.py. Category is filled where it was
# confirmed from v1.0 rows (None elsewhere); the data's own Category column is
# what the task reports, this table is never used to check it.
CALCULATORS: dict[int, tuple[str, str | None, str]] = {
    2: ("Creatinine Clearance (Cockcroft-Gault Equation)", "lab", "decimal"),
    3: ("CKD-EPI Equations for Glomerular Filtration Rate", "lab", "decimal"),
    4: ("CHA2DS2-VASc Score for Atrial Fibrillation Stroke Risk", None, "integer"),
    5: ("Mean Arterial Pressure (MAP)", "physical", "decimal"),
    6: ("Body Mass Index (BMI)", "physical", "decimal"),
    7: ("Calcium Correction for Hypoalbuminemia", None, "decimal"),
    8: ("Wells' Criteria for Pulmonary Embolism", "risk", "decimal"),
    9: ("MDRD GFR Equation", None, "decimal"),
    10: ("Ideal Body Weight", None, "decimal"),
    11: ("QTc Bazett Calculator", "physical", "decimal"),
    13: ("Estimated Due Date", "date", "date"),
    15: ("Child-Pugh Score for Cirrhosis Mortality", "severity", "integer"),
    16: ("Wells' Criteria for DVT", None, "integer"),
    17: ("Revised Cardiac Risk Index for Pre-Operative Risk", None, "integer"),
    18: ("HEART Score for Major Cardiac Events", None, "integer"),
    19: ("Fibrosis-4 (FIB-4) Index for Liver Fibrosis", None, "decimal"),
    20: ("Centor Score (Modified/McIsaac) for Strep Pharyngitis", "severity", "integer"),
    21: ("Glasgow Coma Score (GCS)", None, "integer"),
    22: ("Maintenance Fluids Calculations", None, "decimal"),
    23: ("MELD Na (UNOS/OPTN)", None, "decimal"),
    24: ("Steroid Conversion Calculator", "dosage", "decimal"),
    25: ("HAS-BLED Score for Major Bleeding Risk", None, "integer"),
    26: ("Sodium Correction for Hyperglycemia", None, "decimal"),
    27: ("Glasgow-Blatchford Bleeding Score (GBS)", "risk", "integer"),
    28: ("APACHE II Score", None, "integer"),
    29: ("PSI Score: Pneumonia Severity Index for CAP", None, "integer"),
    30: ("Serum Osmolality", "lab", "decimal"),
    31: ("HOMA-IR (Homeostatic Model Assessment for Insulin Resistance)", None, "decimal"),
    32: ("Charlson Comorbidity Index (CCI)", None, "integer"),
    33: ("FeverPAIN Score for Strep Pharyngitis", None, "integer"),
    36: ("Caprini Score for Venous Thromboembolism (2005)", None, "integer"),
    38: ("Free Water Deficit", None, "decimal"),
    39: ("Anion Gap", "lab", "decimal"),
    40: ("Fractional Excretion of Sodium (FENa)", None, "decimal"),
    43: ("Sequential Organ Failure Assessment (SOFA) Score", None, "integer"),
    44: ("LDL Calculated", None, "decimal"),
    45: ("CURB-65 Score for Pneumonia Severity", None, "integer"),
    46: ("Framingham Risk Score for Hard Coronary Heart Disease", None, "decimal"),
    48: ("PERC Rule for Pulmonary Embolism", "diagnosis", "integer"),
    49: ("Morphine Milligram Equivalents (MME) Calculator", "dosage", "decimal"),
    51: ("SIRS Criteria", "diagnosis", "integer"),
    56: ("QTc Fridericia Calculator", None, "decimal"),
    57: ("QTc Framingham Calculator", None, "decimal"),
    58: ("QTc Hodges Calculator", None, "decimal"),
    59: ("QTc Rautaharju Calculator", None, "decimal"),
    60: ("Body Surface Area Calculator", None, "decimal"),
    61: ("Target weight", None, "decimal"),
    62: ("Adjusted Body Weight", None, "decimal"),
    63: ("Delta Gap", None, "decimal"),
    64: ("Delta Ratio", None, "decimal"),
    65: ("Albumin Corrected Anion Gap", None, "decimal"),
    66: ("Albumin Corrected Delta Gap", None, "decimal"),
    67: ("Albumin Corrected Delta Ratio", None, "decimal"),
    68: ("Estimated of Conception", "date", "date"),
    # v1.0 labels gestational age "integer"; it is scored as a (weeks, days) pair.
    69: ("Estimated Gestational Age", "date", "integer"),
}


def rule_for(calculator_id: int) -> str:
    """Scoring rule of a calculator: 'date', 'weeks_days', 'integer' or 'decimal'."""
    if calculator_id in (13, 68):
        return "date"
    if calculator_id == 69:
        return "weeks_days"
    return CALCULATORS[calculator_id][2]  # KeyError: unknown calculator


# ---------------------------------------------------------------- parsing
# First number: thousands groups ("1,234.5") or plain digits, optional sign,
# decimals and exponent. Linear-time (no nested unbounded repeats).
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_MDY = re.compile(r"(?<!\d)(\d{1,2})[/-](\d{1,2})[/-](\d{4})(?!\d)")
_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_WEEKS = re.compile(r"(?<!\d)(\d{1,6})\s*(?:weeks?|wks?|w)\b", re.I)
_DAYS = re.compile(r"(?<!\d)(\d{1,6})\s*(?:days?|d)\b", re.I)
_INT = re.compile(r"\d{1,6}")


class ParseError(ValueError):
    """The answer cannot be read as the expected kind of value (message is the reason)."""


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def parse_number(value: Any) -> float:
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        raise ParseError(f"answer is {_kind(value)}, expected a number")
    if isinstance(value, list):
        if len(value) != 1:
            raise ParseError("answer is a list, expected a number")
        return parse_number(value[0])
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        m = _NUMBER.search(value)
        if m is None:
            raise ParseError("no number in answer")
        x = float(m.group(0).replace(",", ""))
    else:
        raise ParseError(f"answer is {_kind(value)}, expected a number")
    if not math.isfinite(x):
        raise ParseError("answer is not a finite number")
    return x


def parse_date(value: Any) -> date:
    """m/d/Y (zero padding optional, '-' also accepted), else ISO YYYY-MM-DD."""
    if not isinstance(value, str):
        raise ParseError("answer is not a date m/d/Y")
    m = _MDY.search(value)
    if m:
        mo, d, y = (int(g) for g in m.groups())
    else:
        m = _ISO.search(value)
        if m is None:
            raise ParseError("answer is not a date m/d/Y")
        y, mo, d = (int(g) for g in m.groups())
    try:
        return date(y, mo, d)
    except ValueError:
        raise ParseError("answer is not a valid calendar date") from None


def format_date(d: date) -> str:
    return f"{d.month:02d}/{d.day:02d}/{d.year:04d}"


def _small_int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ParseError("weeks and days must be whole numbers")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value != int(value) or not 0 <= value < 10**6:
            raise ParseError("weeks and days must be whole numbers")
        return int(value)
    if isinstance(value, str):
        m = _INT.search(value)
        if m:
            return int(m.group(0))
    raise ParseError("weeks and days must be whole numbers")


def parse_weeks_days(value: Any) -> tuple[int, int]:
    """(weeks, days) from a pair, {"weeks", "days"} object or text such as
    "(4 weeks, 3 days)", "('4 weeks', '3 days')", "4 weeks 3 days", "(4, 3)"."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ParseError("answer is not a (weeks, days) pair")
        return _small_int(value[0]), _small_int(value[1])
    if isinstance(value, dict):
        keys = {str(k).lower(): v for k, v in value.items()}
        if "weeks" not in keys and "days" not in keys:
            raise ParseError("answer object has no 'weeks' or 'days'")
        return _small_int(keys.get("weeks", 0)), _small_int(keys.get("days", 0))
    if not isinstance(value, str):
        raise ParseError("answer is not a (weeks, days) pair")
    w, d = _WEEKS.search(value), _DAYS.search(value)
    if w or d:  # "8 weeks" alone means 8 weeks 0 days; "6 days" alone 0 weeks 6 days
        return (int(w.group(1)) if w else 0), (int(d.group(1)) if d else 0)
    nums = _INT.findall(value)
    if len(nums) < 2:
        raise ParseError("answer is not a (weeks, days) pair")
    return int(nums[0]), int(nums[1])


def _as_json_number(x: float) -> int | float:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


# ---------------------------------------------------------------- scoring
def parse_gold(rule: str, ground_truth: str, lower: str, upper: str) -> Any:
    """The gold record in comparable form (raises ParseError on malformed gold)."""
    if rule == "date":
        return parse_date(ground_truth)
    if rule == "weeks_days":
        return parse_weeks_days(ground_truth)
    if rule == "integer":
        return round(parse_number(ground_truth))
    if rule == "decimal":
        lo, hi = parse_number(lower), parse_number(upper)
        return min(lo, hi), max(lo, hi)  # a negative truth gives swapped -5%/+5% limits
    raise ParseError(f"unknown scoring rule {rule!r}")


def score_value(value: Any, rule: str, ground_truth: str, lower: str, upper: str) -> Score:
    """Score one answer value under `rule`; never raises."""
    try:
        gold = parse_gold(rule, ground_truth, lower, upper)
    except Exception as exc:
        return Score(False, f"malformed gold record: {exc}"[:200])
    try:
        if rule == "date":
            got = parse_date(value)
            return Score(got == gold, None, format_date(got))
        if rule == "weeks_days":
            got = parse_weeks_days(value)
            return Score(got == gold, None, list(got))
        x = parse_number(value)
        ok = round(x) == gold if rule == "integer" else gold[0] <= x <= gold[1]
        return Score(ok, None, _as_json_number(x))
    except ParseError as exc:
        return Score(False, str(exc))
    except Exception as exc:  # defensive: a scorer must never crash a run
        return Score(False, f"unscorable answer ({type(exc).__name__})")
