"""A patient timeline as prompt text, cut at the prediction time.

Only events strictly before the prediction time are shown (an event at the
prediction time is not: stricter than MEDS, which allows it), newest first,
grouped by kind (conditions, procedures, drugs, labs with value and unit,
hospital visits), each line with its date, under a header with age and sex.
Lines are added newest first until the next line would exceed `token_budget`,
so what is kept is always the most recent part of the record. Tokens are
approximated as ceil(characters / 4) per line (a `count_tokens` callable can
replace this); header and group headings count too, and the header is always kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Sequence

from ehrmind.tasks.ehrshot.formats import BIRTH_CODES, Event, is_static

KINDS = {
    "conditions": ("SNOMED", "ICD9CM", "ICD10CM"),
    "procedures": ("CPT4", "ICD9Proc", "ICD10PCS", "HCPCS"),
    "drugs": ("RxNorm", "RxNorm Extension", "ATC", "NDC"),
    "labs": ("LOINC",),
    "visits": ("Visit",),
}
HEADINGS = {"conditions": "Conditions:", "procedures": "Procedures:", "drugs": "Drugs:",
            "labs": "Labs:", "visits": "Hospital visits:"}
_VOCAB_KIND = {vocab: kind for kind, vocabs in KINDS.items() for vocab in vocabs}


@dataclass(frozen=True)
class Timeline:
    text: str
    shown: tuple[Event, ...]   # the events that made it into the text, newest first
    age: int | None            # age in whole years at the prediction time


def approx_tokens(line: str) -> int:
    return math.ceil(len(line) / 4)


def kind_of(event: Event) -> str | None:
    """conditions / procedures / drugs / labs / visits, or None (demographics, other vocabularies)."""
    if event.code in BIRTH_CODES or is_static(event.code):
        return None
    kind = _VOCAB_KIND.get(event.code.split("/", 1)[0])
    return "labs" if kind is None and event.numeric_value is not None else kind


def _line(event: Event, descriptions: Mapping[str, str]) -> str:
    text = descriptions.get(event.code) or event.code
    if event.numeric_value is not None:
        text += f": {event.numeric_value:g}" + (f" {event.unit}" if event.unit else "")
    elif event.text_value:
        text += f": {event.text_value}"
    return f"- {event.time:%Y-%m-%d} {text}"


def age_at(birth: datetime, when: datetime) -> int:
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def _header(events: Sequence[Event], prediction_time: datetime) -> tuple[str, int | None]:
    births = [e.time for e in events if e.code in BIRTH_CODES and e.time is not None and e.time < prediction_time]
    age = age_at(min(births), prediction_time) if births else None
    sex = None
    for e in events:
        if e.code.upper() in ("GENDER/F", "GENDER/M"):
            sex = "female" if e.code.upper() == "GENDER/F" else "male"
    who = " ".join(p for p in (f"{age}-year-old" if age is not None else None, sex) if p) or "unknown age and sex"
    return f"Patient: {who}. Record before {prediction_time:%Y-%m-%d}, newest first.", age


def serialize_timeline(events: Sequence[Event], prediction_time: datetime, descriptions: Mapping[str, str],
                       token_budget: int = 512, count_tokens: Callable[[str], int] = approx_tokens) -> Timeline:
    header, age = _header(events, prediction_time)
    used = count_tokens(header)
    candidates = [(e, kind, _line(e, descriptions)) for e in events
                  if e.time is not None and e.time < prediction_time and (kind := kind_of(e))]
    candidates.sort(key=lambda c: c[2])                        # same-time ties: by text, whatever the source order
    candidates.sort(key=lambda c: c[0].time, reverse=True)     # stable: newest first
    groups: dict[str, list[str]] = {}
    shown: list[Event] = []
    for event, kind, line in candidates:
        if line in groups.get(kind, ()):                       # same item twice on one day
            continue
        cost = count_tokens(line) + (0 if kind in groups else count_tokens(HEADINGS[kind]))
        if used + cost > token_budget:
            break
        used += cost
        groups.setdefault(kind, []).append(line)
        shown.append(event)
    body = [part for kind in HEADINGS if kind in groups for part in (HEADINGS[kind], *groups[kind])]
    text = "\n".join([header, *(body or ["No coded events before the prediction time."])])
    return Timeline(text, tuple(shown), age)
