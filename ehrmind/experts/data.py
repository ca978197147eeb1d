"""The expert's patients, from a task's data config or from the JSONL that `ehrmind prepare-data` writes.

From the data config the expert sees each patient's whole record (up to the prediction point).
From the JSONL it reads the serialized record back (`serialize.parse_record`), so it sees exactly
what the language model's prompt shows: the visits and features left after the token budget.
"""
from __future__ import annotations

from typing import Sequence

from ehrmind.experts.concare import ExpertRow
from ehrmind.tasks.base import DataError, Example
from ehrmind.tasks.ehr.formats import Record
from ehrmind.tasks.ehr.serialize import parse_record


def from_records(records: Sequence[Record], target: str) -> list[ExpertRow]:
    return [ExpertRow(r.patient_id, r.label(target), r.days, r.features, r.values, r.sex, r.age) for r in records]


def from_examples(examples: Sequence[Example], where: str = "<examples>") -> list[ExpertRow]:
    rows = []
    for i, ex in enumerate(examples, start=1):
        try:
            text = _record_text(ex)
            parsed = parse_record(text, ex.gold["features"])
            features = tuple(parsed.values)
            values = tuple(tuple(parsed.values[f][t] for f in features) for t in range(len(parsed.days)))
            rows.append(ExpertRow(str(ex.gold["patient_id"]), int(ex.gold["label"]), parsed.days, features, values,
                                  parsed.sex, parsed.age))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{where}: row {i} (id {ex.id}), field 'record': not a structured-EHR example "
                            f"({type(exc).__name__}: {exc})") from None
    return rows


def _record_text(ex: Example) -> str:
    return ex.fields["record"]
