"""From a task's data config to its patients' records and a train/test split.

Three tasks share this code: `tjh_mortality` (TJH, in-hospital death), `mimic4_mortality`
and `mimic4_readmission` (MIMIC-IV, in-hospital death; readmission or death within 30
days of discharge). Patients are split, never records; the split is stratified on
in-hospital death for every task (the convention's MIMIC-IV test set is stratified on
mortality), so the two MIMIC-IV tasks share one split and no test patient of one is a
training patient of the other. Each patient's side is drawn from (seed, patient id) within
its class, so it does not depend on the order of the file.

data_cfg keys:
  source             "embedded" (default) | "formatted" (CSV/parquet long table) | "tjh_xlsx" (tjh only)
  path               formatted / tjh_xlsx: the file
  features           feature columns to use (default: embedded, the cohort's set; files, every
                     feature column of the file, the 73 labs for the TJH release)
  observation_days   only visits within this many days of the admission day (default: all, the
                     record up to the last visit, as the convention predicts)
  test_size          test share in (0, 1) or a number of test patients (default: TJH 0.2, which is
                     75 of the 375 patients; MIMIC-IV 200, the convention's test set)
  n_patients         embedded: patients (default TJH 375, MIMIC-IV 1,000)
  death_rate         embedded TJH (default 174/375); mortality, readmission_rate: embedded MIMIC-IV
                     (defaults 0.12, 0.20)
"""
from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Any

from ehrmind.tasks.base import DataError
from ehrmind.tasks.ehr import formats, synthetic
from ehrmind.tasks.ehr.features import MIMIC_FEATURES, TJH_SUBSET
from ehrmind.tasks.ehr.formats import Record

SOURCES = ("embedded", "formatted", "tjh_xlsx")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Spec:
    name: str
    cohort: str                  # "tjh" | "mimic4"
    target: str                  # Record label: "outcome" | "readmission"
    classes: tuple[str, str]     # class names, label 0 then 1
    question: str
    default_test_size: float
    default_patients: int


SPECS = {
    "tjh_mortality": Spec("tjh_mortality", "tjh", "outcome", ("survived", "died"),
                          "Will this patient die in hospital?", 0.2, 375),
    "mimic4_mortality": Spec("mimic4_mortality", "mimic4", "outcome", ("survived", "died"),
                             "Will this patient die in hospital?", 200, 1000),
    "mimic4_readmission": Spec("mimic4_readmission", "mimic4", "readmission", ("not readmitted", "readmitted"),
                               "Will this patient be readmitted, or die, within 30 days of discharge?", 200, 1000),
}
EMBEDDED_FEATURES = {"tjh": tuple(f.name for f in TJH_SUBSET), "mimic4": tuple(f.name for f in MIMIC_FEATURES)}


def planted(spec: Spec) -> tuple[str, ...]:
    """The features that drive the embedded cohort's label of this task."""
    table = synthetic.TJH_PLANTED if spec.cohort == "tjh" else synthetic.MIMIC_PLANTED
    return table[spec.target]


def _number(cfg: dict[str, Any], key: str, default: float, low: float, high: float, name: str) -> float:
    x = default if cfg.get(key) is None else cfg[key]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not low <= x <= high:
        raise ValueError(f"{name}: {key} must be a number in [{low}, {high}], got {x!r}")
    return float(x)


def load_records(spec: Spec, cfg: dict[str, Any], seed: int) -> list[Record]:
    """Every patient of the task's cohort with at least 2 visits (in the observation window)."""
    source = str(cfg.get("source") or "embedded")
    if source not in SOURCES or source == "tjh_xlsx" and spec.cohort != "tjh":
        allowed = SOURCES if spec.cohort == "tjh" else SOURCES[:2]
        raise ValueError(f"{spec.name}: unknown source {source!r}; expected one of {', '.join(allowed)}")
    if source == "embedded":
        n = spec.default_patients if cfg.get("n_patients") is None else cfg["n_patients"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{spec.name}: n_patients must be a positive integer, got {n!r}")
        if spec.cohort == "tjh":
            table = synthetic.generate_tjh(n, seed, _number(cfg, "death_rate", synthetic.TJH_DEATH_RATE, 0, 1, spec.name))
        else:
            table = synthetic.generate_mimic4(
                n, seed, _number(cfg, "mortality", synthetic.MIMIC_MORTALITY, 0, 1, spec.name),
                _number(cfg, "readmission_rate", synthetic.MIMIC_READMISSION, 0, 0.999, spec.name))
        path = f"<embedded {spec.cohort} cohort>"
    else:
        if not cfg.get("path"):
            raise ValueError(f"{spec.name}: source {source!r} needs data_cfg key 'path'")
        path = cfg["path"]
        table = formats.read_tjh_xlsx(path) if source == "tjh_xlsx" else formats.read_formatted(path)
    table = formats.prepare(table)
    features = cfg.get("features") or (EMBEDDED_FEATURES[spec.cohort] if source == "embedded"
                                       else formats.feature_columns(table))
    if isinstance(features, str) or not all(isinstance(f, str) for f in features):
        raise ValueError(f"{spec.name}: features must be a list of column names, got {features!r}")
    window = cfg.get("observation_days")
    if window is not None:
        _number(cfg, "observation_days", 0, 0, float("inf"), spec.name)
    records = formats.to_records(table, list(features), path, window)
    if spec.target == "readmission":
        for r in records:
            if r.readmission is None:
                raise DataError(f"{path}: patient {r.patient_id}, column 'Readmission': expected 0 or 1 for the "
                                f"readmission task, got no value")
    if not records:
        raise DataError(f"{path}: no patient has 2 or more visits" + (" in the observation window" if window else ""))
    return records


def split_ids(records: list[Record], test_size: float, seed: int) -> dict[str, str]:
    """patient id -> "train" | "test", stratified on in-hospital death: per class, the patients
    ordered by a draw from (seed, id) and the first round(share * class size) of them tested."""
    n = len(records)
    share = test_size if test_size < 1 else test_size / n
    side = {}
    for outcome in (0, 1):
        ids = sorted((r.patient_id for r in records if r.outcome == outcome),
                     key=lambda pid: (Random(f"ehr-split-{seed}-{pid}").random(), pid))
        k = int(round(share * len(ids)))
        side.update({pid: "test" if i < k else "train" for i, pid in enumerate(ids)})
    return side


def records_for(spec: Spec, split: str, cfg: dict[str, Any], seed: int) -> list[Record]:
    if split not in SPLITS:
        raise ValueError(f"{spec.name}: unknown split {split!r}; expected one of {SPLITS}")
    records = load_records(spec, cfg, seed)
    test_size = cfg.get("test_size", spec.default_test_size)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < len(records) \
            or test_size >= 1 and test_size != int(test_size):
        raise ValueError(f"{spec.name}: test_size must be a share in (0, 1) or a whole number of patients below "
                         f"{len(records)}, got {test_size!r}")
    side = split_ids(records, test_size, seed)
    return [r for r in records if side[r.patient_id] == split]
