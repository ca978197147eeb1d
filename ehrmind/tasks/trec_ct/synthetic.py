"""Seeded generator of the embedded TREC CT data: patient vignettes, trials, qrels, rationales.

A patient has an age (18-88), a sex and 1-3 conditions; the vignette names all of them
and says nothing else clinical, so a condition not named is absent. A trial requires one
condition (its inclusion criterion), has an age window (structured minimum/maximum age,
inclusive, and stated among the exclusion criteria: "Age under X or over Y years", since
EHRMind's prompt shows only the title and the two criteria blocks) and excludes one other
condition. The label follows these rules, checked in this order:

1. the patient lacks the required condition                        -> 0 not relevant
2. the patient's age is outside the window                         -> 1 excluded
3. the patient has the exclusion condition                         -> 1 excluded
4. otherwise                                                       -> 2 eligible

Each patient is paired with `trials_per_patient` trials aiming at the three labels in
turn (so classes are balanced); half of the time an existing trial that fits is reused,
so trials are shared between patients as in the real collection. The label and the
rationale always come from the rules above, never from the aim.
"""
from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import NamedTuple

from ehrmind.tasks.trec_ct.formats import QrelRows, Trial

# condition -> a medication a patient with it may take
CONDITIONS = {
    "type 2 diabetes": "metformin", "hypertension": "lisinopril", "asthma": "an albuterol inhaler",
    "atrial fibrillation": "apixaban", "heart failure": "furosemide", "COPD": "tiotropium",
    "chronic kidney disease": "", "rheumatoid arthritis": "methotrexate", "major depression": "sertraline",
    "breast cancer": "tamoxifen", "epilepsy": "levetiracetam", "hypothyroidism": "levothyroxine",
    "osteoporosis": "alendronate", "migraine": "sumatriptan", "liver cirrhosis": "", "psoriasis": "",
}
NAMES = tuple(CONDITIONS)
TITLES = ("A Study of {drug} in Adults With {cond}", "{drug} Versus Placebo in {cond}",
          "Exercise Training for Patients With {cond}", "Safety of {drug} in {cond}")
INCLUDE = ("Diagnosis of {cond}", "Confirmed {cond}", "Patients with {cond}")
EXCLUDE = ("History of {cond}", "Known {cond}", "Current {cond}")


@dataclass(frozen=True)
class Patient:
    age: int
    sex: str                     # "man" | "woman"
    conditions: tuple[str, ...]
    medication: str


@dataclass(frozen=True)
class TrialSpec:
    required: str
    min_age: int
    max_age: int
    excluded: str


class Embedded(NamedTuple):
    topics: dict[str, str]
    qrels: QrelRows
    trials: dict[str, Trial]
    rationales: dict[tuple[str, str], str]


def label_for(p: Patient, t: TrialSpec) -> tuple[int, str]:
    """The rule-based label and a one-sentence rationale naming the deciding criterion."""
    if t.required not in p.conditions:
        return 0, f"The trial requires {t.required}, which the patient does not have, so it is not relevant."
    window = f"{t.min_age} to {t.max_age} years"
    if not t.min_age <= p.age <= t.max_age:
        return 1, (f"The patient has {t.required}, but at {p.age} is outside the trial's age range of {window}, "
                   f"so the patient is excluded.")
    if t.excluded in p.conditions:
        return 1, (f"The patient has {t.required} and is within {window}, but {t.excluded} is an exclusion "
                   f"criterion, so the patient is excluded.")
    return 2, (f"The patient has {t.required}, is {p.age} (within {window}) and does not have {t.excluded}, "
               f"so the patient is eligible.")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _patient(r: Random) -> Patient:
    conditions = tuple(r.sample(NAMES, r.choice((1, 2, 2, 3))))
    meds = [CONDITIONS[c] for c in conditions if CONDITIONS[c]]
    return Patient(r.randint(18, 88), r.choice(("man", "woman")), conditions, r.choice(meds) if meds else "")


def vignette(p: Patient, r: Random) -> str:
    conds = _join(list(p.conditions))
    first = r.choice((f"A {p.age}-year-old {p.sex} with {conds}.",
                      f"{p.age}-year-old {p.sex} with a history of {conds}.",
                      f"A {p.age}-year-old {p.sex} is seen for follow-up of {conds}."))
    pronoun = "He" if p.sex == "man" else "She"
    med = r.choice((f" {pronoun} takes {p.medication}.", f" Current medication: {p.medication}.")) if p.medication else ""
    return first + med + r.choice((" No other medical history.", f" {pronoun} has no other known conditions."))


def _window(age: int, inside: bool, r: Random) -> tuple[int, int]:
    if inside:
        lo = max(18, age - r.randint(0, 25))
        return lo, max(age + r.randint(0, 25), lo + 10)
    options = []
    if age >= 30:  # a window that ends below the patient's age
        hi = age - r.randint(1, 10)
        options.append((max(18, hi - r.choice((10, 20, 30))), hi))
    if age <= 80:  # one that starts above it
        lo = age + r.randint(1, 10)
        options.append((lo, lo + r.choice((10, 20, 30))))
    return r.choice(options)


def _spec_for(p: Patient, aim: int, r: Random) -> TrialSpec:
    absent = [c for c in NAMES if c not in p.conditions]
    if aim == 0:
        required = r.choice(absent)
        return TrialSpec(required, *_window(p.age, r.random() < 0.5, r), r.choice([c for c in NAMES if c != required]))
    required = r.choice(p.conditions)
    others = [c for c in p.conditions if c != required]
    if aim == 1 and others and r.random() < 0.5:
        return TrialSpec(required, *_window(p.age, True, r), r.choice(others))
    return TrialSpec(required, *_window(p.age, aim == 2, r), r.choice(absent))


def _trial(nct_id: str, spec: TrialSpec, r: Random) -> Trial:
    drug = f"{''.join(r.choices('ABCDEFGHKLMPRSTVZ', k=3))}-{r.randint(100, 999)}"
    criteria = (f"Inclusion Criteria:\n- {r.choice(INCLUDE).format(cond=spec.required)}\n"
                f"Exclusion Criteria:\n- Age under {spec.min_age} or over {spec.max_age} years\n"
                f"- {r.choice(EXCLUDE).format(cond=spec.excluded)}")
    return Trial(nct_id, r.choice(TITLES).format(drug=drug, cond=spec.required), (spec.required,), criteria,
                 gender="All", minimum_age=f"{spec.min_age} Years", maximum_age=f"{spec.max_age} Years")


def generate(n_patients: int = 40, trials_per_patient: int = 6, seed: int = 0) -> Embedded:
    """Topics "1".."n", their judged trials and the rationale of each pair."""
    r = Random(f"trec_ct-embedded-{seed}")  # str seeds hash with SHA-512: stable across runs
    topics: dict[str, str] = {}
    qrels: QrelRows = []
    trials: dict[str, Trial] = {}
    specs: dict[str, TrialSpec] = {}
    rationales: dict[tuple[str, str], str] = {}
    for number in range(1, n_patients + 1):
        qid, patient = str(number), _patient(r)
        topics[qid] = vignette(patient, r)
        aims = [i % 3 for i in range(trials_per_patient)]
        r.shuffle(aims)
        for aim in aims:
            fits = [d for d, s in specs.items() if label_for(patient, s)[0] == aim and (qid, d) not in rationales]
            if fits and r.random() < 0.5:
                docid = r.choice(fits)
            else:
                docid = f"NCT{r.randrange(10**7, 10**8):08d}"
                while docid in trials:
                    docid = f"NCT{r.randrange(10**7, 10**8):08d}"
                specs[docid] = _spec_for(patient, aim, r)
                trials[docid] = _trial(docid, specs[docid], r)
            label, rationales[qid, docid] = label_for(patient, specs[docid])
            qrels.append((qid, docid, label))
    return Embedded(topics, qrels, trials, rationales)
