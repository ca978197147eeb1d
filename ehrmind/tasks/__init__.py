"""Task registry: name -> task object. A new task is a module plus one line here."""
from __future__ import annotations

from ehrmind.tasks.base import DataError, Example, Score, Task


def _medcalc() -> Task:
    from ehrmind.tasks.medcalc import MedCalcTask
    return MedCalcTask()


_REGISTRY = {"medcalc": _medcalc}
TASK_NAMES = tuple(_REGISTRY)


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}") from None


__all__ = ["DataError", "Example", "Score", "Task", "TASK_NAMES", "get_task"]
