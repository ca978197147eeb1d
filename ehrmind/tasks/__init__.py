"""Task registry: name -> task object. A new task is a module plus one line here."""
from __future__ import annotations

from ehrmind.tasks.base import ClassificationTask, DataError, Example, Score, Task


def _medcalc() -> Task:
    from ehrmind.tasks.medcalc import MedCalcTask
    return MedCalcTask()


def _trec_ct() -> Task:
    from ehrmind.tasks.trec_ct import TrecCTTask
    return TrecCTTask()


def _ehrshot() -> Task:
    from ehrmind.tasks.ehrshot import EhrshotTask
    return EhrshotTask()


def _ehr(name: str):
    def make() -> Task:
        from ehrmind.tasks.ehr import EhrTask
        return EhrTask(name)
    return make


_REGISTRY = {"medcalc": _medcalc, "trec_ct": _trec_ct, "ehrshot": _ehrshot,
             **{name: _ehr(name) for name in ("tjh_mortality", "mimic4_mortality", "mimic4_readmission")}}
TASK_NAMES = tuple(_REGISTRY)
STRUCTURED = ("tjh_mortality", "mimic4_mortality", "mimic4_readmission")   # EAG-RL's structured-EHR tasks
MULTI = "multi"   # training-only task: the union of the grid's training sets


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}") from None


__all__ = ["ClassificationTask", "DataError", "Example", "MULTI", "STRUCTURED", "Score", "Task", "TASK_NAMES",
           "get_task"]
