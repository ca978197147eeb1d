"""A structured-EHR record as prompt text, and back.

The text holds only what `Record` holds: sex, age, each visit's day since admission and,
per feature, its values across the visits (oldest first, NaN where not measured) with unit
and reference range. The record ends at the prediction point (its last visit); discharge,
length of stay and labels are never part of it. Example:

    Sex: male. Age: 63.
    Visit days since admission: 0, 2, 5, 6
    Lactate dehydrogenase (U/L, normal 120-250): 312, 455, NaN, 610
    pH (normal 7.35-7.45): NaN, 7.31, 7.35, NaN

Features with no value in the shown visits are left out. Numbers keep 4 significant digits
(the synthetic labs carry at most 4; a day's mean of real values would carry more).
Token budget: ceil(characters / 4) per line, as the EHRSHOT serializer counts (a
`count_tokens` callable can replace it). Over budget, the oldest visits go first (the
prediction point is always kept), then, at one visit, the last feature lines.

Feature order: the record's (the table's column order), or, with `shuffle_fraction` f > 0,
round(f * n) of the n shown features (at least 2) chosen at random and permuted among their
positions by Sattolo's algorithm, so every chosen feature moves; seeded per patient from
`seed`. EAG-RL's robustness experiment permutes 0.2, 0.4, 0.6 and 1.0 of the features.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from random import Random
from typing import Callable, Sequence

import numpy as np

from ehrmind.tasks.ehr.features import describe
from ehrmind.tasks.ehr.formats import Record

DAYS = "Visit days since admission: "
MISSING = "NaN"


@dataclass(frozen=True)
class Serialized:
    text: str
    features: tuple[str, ...]   # the feature lines in the text, in text order
    visits: int                 # visits shown (the last ones of the record)


@dataclass(frozen=True)
class Parsed:
    sex: int
    age: float
    days: tuple[int, ...]
    values: dict[str, tuple[float, ...]]   # feature -> values per visit (NaN where missing), text order


def approx_tokens(line: str) -> int:
    return math.ceil(len(line) / 4)


def number(x: float) -> str:
    if math.isnan(x):
        return MISSING
    return np.format_float_positional(x, precision=4, unique=True, fractional=False, trim="-")


def feature_prefix(name: str) -> str:
    f = describe(name)
    meta = ", ".join(p for p in (f.unit, f"normal {f.normal()}" if f.normal() else "") if p)
    return f"{name} ({meta})" if meta else name


def _header(record: Record, days: Sequence[int]) -> list[str]:
    sex = "male" if record.sex == 1 else "female"
    return [f"Sex: {sex}. Age: {number(record.age)}.", DAYS + ", ".join(str(d) for d in days)]


def permute(names: Sequence[str], fraction: float, rng: Random) -> list[str]:
    """`names` with round(fraction * n) of them (at least 2 when fraction > 0) moved among their positions."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"shuffle_fraction must lie in [0, 1], got {fraction}")
    out = list(names)
    k = min(len(out), max(2, int(fraction * len(out) + 0.5))) if fraction > 0 else 0
    if k < 2:
        return out
    positions = sorted(rng.sample(range(len(out)), k))
    chosen = [out[p] for p in positions]
    for i in range(k - 1, 0, -1):          # Sattolo: a uniformly random cyclic permutation
        j = rng.randrange(i)
        chosen[i], chosen[j] = chosen[j], chosen[i]
    for p, name in zip(positions, chosen):
        out[p] = name
    return out


def serialize_record(record: Record, token_budget: int = 600, shuffle_fraction: float = 0.0, seed: int = 0,
                     count_tokens: Callable[[str], int] = approx_tokens) -> Serialized:
    values = np.asarray(record.values, dtype=float).reshape(len(record.days), len(record.features))
    rng_seed = f"ehr-shuffle-{seed}-{record.patient_id}"
    for start in range(len(record.days)):              # drop the oldest visits until it fits
        shown = values[start:]
        present = [f for j, f in enumerate(record.features) if not np.isnan(shown[:, j]).all()]
        order = permute(present, shuffle_fraction, Random(rng_seed))
        column = {f: j for j, f in enumerate(record.features)}
        lines = _header(record, record.days[start:])
        body = [f"{feature_prefix(f)}: " + ", ".join(number(x) for x in shown[:, column[f]]) for f in order]
        used = sum(count_tokens(line) for line in lines)
        cost = [count_tokens(line) for line in body]
        if used + sum(cost) <= token_budget or start == len(record.days) - 1:
            kept = len(body)
            while kept and used + sum(cost[:kept]) > token_budget:   # one visit and still too long
                kept -= 1
            return Serialized("\n".join(lines + body[:kept]), tuple(order[:kept]), len(record.days) - start)
    raise ValueError(f"patient {record.patient_id}: a record needs at least one visit")


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def parse_record(text: str, features: Sequence[str]) -> Parsed:
    """Read a serialized record back; `features` names the feature lines it holds (the
    example's gold["features"]), so names with parentheses or colons are found exactly."""
    lines = text.splitlines()
    m = re.fullmatch(r"Sex: (male|female)\. Age: ([\d.]+)\.", lines[0] if lines else "")
    if not m or len(lines) < 2 or not lines[1].startswith(DAYS):
        raise ValueError("not a serialized record: expected 'Sex: ... Age: ...' and a visit-days line first")
    days = tuple(int(d) for d in lines[1][len(DAYS):].split(", "))
    values: dict[str, tuple[float, ...]] = {}
    prefixes = {feature_prefix(f) + ": ": f for f in features}
    for line in lines[2:]:
        found = [p for p in prefixes if line.startswith(p)]
        if not found:
            raise ValueError(f"line names none of the given features: {line[:80]!r}")
        prefix = max(found, key=len)
        cells = line[len(prefix):].split(", ")
        if len(cells) != len(days) or not all(c == MISSING or _NUMBER.match(c) for c in cells):
            raise ValueError(f"expected {len(days)} numbers or NaN after {prefix!r}, got {line[len(prefix):]!r}")
        values[prefixes[prefix]] = tuple(math.nan if c == MISSING else float(c) for c in cells)
    return Parsed(1 if m.group(1) == "male" else 0, float(m.group(2)), days, values)
