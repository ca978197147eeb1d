"""The task contract: every task is one module that turns a data source into
`Example`s, declares its EHRMind prompt (a `PromptTemplate` filled with an example's
`fields`) and the answer JSON's keys, and scores a parsed answer against an example's
gold record.

Rendering, parsing and the reward are shared (`ehrmind.methods.ehrmind`), so a new
task only has to say what its data is, how EHRMind asks about it, and what a correct
answer is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from random import Random
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

if TYPE_CHECKING:
    from ehrmind.methods.ehrmind.prompts import PromptTemplate

T = TypeVar("T")


class DataError(ValueError):
    """A data file does not have the expected format (message names file, row, field)."""


@dataclass(frozen=True)
class Example:
    id: str                 # stable across runs; used to pair items between stages
    category: str           # reporting group (MedCalc category, trial label, ...)
    fields: dict[str, str]  # named text parts the task's prompt template fills ({note}, {question}, ...)
    gold: dict[str, Any]    # JSON-serializable; everything `Task.score` needs
    reasoning: str          # SFT target inside <think>
    answer: dict[str, Any]  # SFT target answer JSON, e.g. {"answer": "88.2"}
    task: str = ""          # name of the task the example belongs to (set by prepare-data; the
                            # `multi` training set mixes tasks, so prompt and reward follow this)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Example":
        return cls(**obj)


@dataclass(frozen=True)
class Score:
    correct: bool
    error: str | None = None   # why the answer could not be scored (None when it could)
    value: Any = None          # the answer as the scorer read it, for predictions.jsonl
    probability: float | None = None   # a stated probability of class 1 (binary tasks that ask for one)


class Task(Protocol):
    name: str
    prompt: PromptTemplate         # EHRMind's prompt for this task (methods/ehrmind/prompts.py)
    answer_keys: tuple[str, ...]   # keys the answer JSON must have (a missing one is a format error)
    headline: str                  # the paper's main metric: accuracy, balanced_accuracy or auroc

    def load_split(self, split: str, data_cfg: dict[str, Any], seed: int) -> list[Example]:
        """Return the examples of `split` ("train" or "test").

        `data_cfg` is this task's block of the run config (source, sizes, ...).
        Raises DataError naming file, row and field on malformed input."""
        ...

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> Score:
        """Score an answer JSON object (already parsed, never evaluated)."""
        ...


class ClassificationTask(Task, Protocol):
    """A task whose answer is one of a few classes. Evaluation then also reports
    balanced accuracy, macro-F1, Cohen's kappa and the confusion matrix, and for
    two classes AUROC from the model's probability of answering class 1.

    Contract: gold["label"] is the gold class index; `score` returns
    Score.value = the predicted class index (None when there is none); the answer
    JSON holds the class index under `label_key`. A task whose answer states a
    probability of class 1 returns it in Score.probability; AUROC then uses it."""
    labels: tuple[str, ...]   # class names; position = class index
    label_key: str            # answer JSON key that holds the class index ("idx", "label")


def balanced_subsample(items: list[T], per_category: int | None, seed: int,
                       category: Callable[[T], str] = lambda ex: ex.category) -> list[T]:
    """Up to `per_category` items of each category, drawn with `seed`; original order kept."""
    if per_category is None:
        return items
    by_category: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_category.setdefault(category(item), []).append(i)
    rng = Random(seed)
    keep: set[int] = set()
    for name in sorted(by_category):
        idx = by_category[name]
        keep.update(rng.sample(idx, min(per_category, len(idx))))
    return [item for i, item in enumerate(items) if i in keep]
