"""Readers and writers of the TREC Clinical Trials formats.

- topics: TREC XML, `<topics><topic number="1">free text</topic>...</topics>`
- qrels: lines `topic iteration trial label`, label 0 not relevant, 1 excluded, 2 eligible
- trials: ClinicalTrials.gov XML files (`NCTxxxxxxxx.xml`, root `<clinical_study>`), JSON files
  or a JSONL file of objects with keys nct_id, title, condition, eligibility
  (optional gender, minimum_age, maximum_age, and inclusion_criteria / exclusion_criteria
  as TrialGPT's trial_info.json has them)
- an `ir_datasets` dataset object (queries_iter, qrels_iter, docs_store)

In memory: topics are `dict[topic id, text]`, qrels `list[(topic, trial, label)]`, trials a
lookup `trial id -> Trial` (a dict, or a store that parses a record on first access).
A Trial keeps its inclusion and its exclusion criteria apart (EHRMind shows them as two
blocks): from the record's own fields where it has them, else split at the
"Inclusion Criteria:" / "Exclusion Criteria:" headings of the criteria text.
Every malformed input raises `DataError` naming file, line/element and field.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from ehrmind.tasks.base import DataError

QrelRows = list[tuple[str, str, int]]
LABEL_VALUES = ("0", "1", "2")


@dataclass(frozen=True)
class Trial:
    nct_id: str
    title: str
    conditions: tuple[str, ...]
    eligibility: str          # the criteria text, lines stripped, blank lines dropped
    gender: str = ""          # "All", "Female", "Male" or ""
    minimum_age: str = ""     # as ClinicalTrials.gov writes it: "18 Years", "N/A" or ""
    maximum_age: str = ""
    inclusion: str = ""       # the inclusion criteria (set by __post_init__ from eligibility when empty)
    exclusion: str = ""       # the exclusion criteria

    def __post_init__(self):
        if not self.inclusion and not self.exclusion:
            inclusion, exclusion = split_criteria(self.eligibility)
            object.__setattr__(self, "inclusion", inclusion)
            object.__setattr__(self, "exclusion", exclusion)


class TrialLookup(Protocol):
    def __getitem__(self, trial_id: str) -> Trial: ...   # KeyError when there is no document

    def __contains__(self, trial_id: object) -> bool: ...


_HEADING = re.compile(r"^\s*(inclusion|exclusion)\s+criteria\b\s*:?", re.I | re.M)


def split_criteria(text: str) -> tuple[str, str]:
    """(inclusion, exclusion) of a criteria text, split at its "Inclusion Criteria:" and
    "Exclusion Criteria:" heading lines; text before any heading counts as inclusion, and a
    text without headings is all inclusion."""
    parts = {"inclusion": [], "exclusion": []}
    current, last = "inclusion", 0
    for m in _HEADING.finditer(text):
        parts[current].append(text[last:m.start()])
        current, last = m.group(1).lower(), m.end()
    parts[current].append(text[last:])
    return tuple(clean_text("\n".join(parts[k])) for k in ("inclusion", "exclusion"))


def clean_text(text: str) -> str:
    """Strip every line and drop blank ones (XML textblocks are indented and padded)."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise DataError(f"{path}: not well-formed XML at line {line}, column {col}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text: {exc}") from None


# ---------------------------------------------------------------- topics
def read_topics(path: str | Path) -> dict[str, str]:
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "topics":
        raise DataError(f"{path}: root element <{root.tag}>: expected <topics>")
    topics: dict[str, str] = {}
    for k, el in enumerate(root.iter("topic"), 1):
        number = (el.get("number") or "").strip()
        if not number:
            raise DataError(f"{path}: <topic> element #{k}: field 'number' missing; "
                            f"expected <topic number=\"ID\">")
        text = clean_text("".join(el.itertext()))
        if not text:
            raise DataError(f"{path}: topic {number}: field 'text' empty; expected the patient description")
        if number in topics:
            raise DataError(f"{path}: topic {number}: field 'number' repeated; expected unique topic numbers")
        topics[number] = text
    if not topics:
        raise DataError(f"{path}: no <topic> elements; expected at least one")
    return topics


def write_topics_xml(topics: dict[str, str], path: str | Path, task: str = "2021 TREC Clinical Trials") -> None:
    root = ET.Element("topics", task=task)
    for number, text in topics.items():
        ET.SubElement(root, "topic", number=number).text = text
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------- qrels
def read_qrels_lines(path: str | Path) -> list[tuple[int, str, str, int]]:
    """(line number, topic, trial, label) for each non-blank line; pairs must be unique."""
    path = Path(path)
    rows: list[tuple[int, str, str, int]] = []
    first: dict[tuple[str, str], int] = {}
    for n, line in enumerate(_read_lines(path), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 4:
            raise DataError(f"{path}: line {n}: expected 4 whitespace-separated columns "
                            f"'topic iteration trial label', got {len(cols)}")
        qid, _, docid, label = cols
        if label not in LABEL_VALUES:
            raise DataError(f"{path}: line {n}: field 'label': expected 0, 1 or 2, got {label!r}")
        if (qid, docid) in first:
            raise DataError(f"{path}: line {n}: field 'trial': pair (topic {qid}, trial {docid}) repeated; "
                            f"first on line {first[qid, docid]}")
        first[qid, docid] = n
        rows.append((n, qid, docid, int(label)))
    return rows


def read_qrels(path: str | Path) -> QrelRows:
    return [(qid, docid, label) for _, qid, docid, label in read_qrels_lines(path)]


def write_qrels(qrels: Iterable[tuple[str, str, int]], path: str | Path) -> None:
    Path(path).write_text("".join(f"{q} 0 {d} {label}\n" for q, d, label in qrels), encoding="utf-8")


# ---------------------------------------------------------------- trials
def read_trial_xml(path: str | Path) -> Trial:
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "clinical_study":
        raise DataError(f"{path}: root element <{root.tag}>: expected <clinical_study>")
    nct_id = (root.findtext("id_info/nct_id") or "").strip()
    if not nct_id:
        raise DataError(f"{path}: element <id_info><nct_id>: missing or empty; expected the trial's NCT id")
    criteria = clean_text(root.findtext("eligibility/criteria/textblock") or "")
    if not criteria:
        raise DataError(f"{path}: trial {nct_id}: element <eligibility><criteria><textblock>: missing or empty; "
                        f"expected the eligibility criteria text")
    title = (root.findtext("brief_title") or root.findtext("official_title") or "").strip()
    conditions = tuple(c.text.strip() for c in root.findall("condition") if c.text and c.text.strip())
    return Trial(nct_id, title, conditions, criteria,
                 gender=(root.findtext("eligibility/gender") or "").strip(),
                 minimum_age=(root.findtext("eligibility/minimum_age") or "").strip(),
                 maximum_age=(root.findtext("eligibility/maximum_age") or "").strip())


def write_trial_xml(trial: Trial, path: str | Path) -> None:
    root = ET.Element("clinical_study")
    ET.SubElement(ET.SubElement(root, "id_info"), "nct_id").text = trial.nct_id
    ET.SubElement(root, "brief_title").text = trial.title
    for condition in trial.conditions:
        ET.SubElement(root, "condition").text = condition
    eligibility = ET.SubElement(root, "eligibility")
    ET.SubElement(ET.SubElement(eligibility, "criteria"), "textblock").text = trial.eligibility
    for field in ("gender", "minimum_age", "maximum_age"):
        if getattr(trial, field):
            ET.SubElement(eligibility, field).text = getattr(trial, field)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def trial_from_json(obj: Any, where: str) -> Trial:
    """A Trial from one JSON object; `where` names file (and line) in errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")

    def text(key: str, required: bool = False) -> str:
        value = obj.get(key, "")
        if not isinstance(value, str):
            raise DataError(f"{where}: field {key!r}: expected a string, got {type(value).__name__}")
        if required and not value.strip():
            raise DataError(f"{where}: field {key!r}: missing or empty; expected "
                            + ("the trial's NCT id" if key == "nct_id" else "the eligibility criteria text"))
        return value.strip()

    nct_id = text("nct_id", required=True)
    conditions = obj.get("condition", [])
    if isinstance(conditions, str):
        conditions = [conditions]
    if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
        raise DataError(f"{where}: trial {nct_id}: field 'condition': expected a string or a list of strings")
    inclusion, exclusion = clean_text(text("inclusion_criteria")), clean_text(text("exclusion_criteria"))
    if inclusion or exclusion:
        eligibility = clean_text(text("eligibility")) or \
            f"Inclusion Criteria:\n{inclusion}\nExclusion Criteria:\n{exclusion}"
    else:
        eligibility = clean_text(text("eligibility", required=True))
    return Trial(nct_id, text("title"), tuple(c.strip() for c in conditions if c.strip()), eligibility,
                 text("gender"), text("minimum_age"), text("maximum_age"), inclusion, exclusion)


def trial_to_json(trial: Trial) -> dict[str, Any]:
    obj = asdict(trial)
    obj["condition"] = list(obj.pop("conditions"))
    obj["inclusion_criteria"], obj["exclusion_criteria"] = obj.pop("inclusion"), obj.pop("exclusion")
    return obj


def read_trial_json(path: str | Path) -> Trial:
    path = Path(path)
    try:
        obj = json.loads("\n".join(_read_lines(path)))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    return trial_from_json(obj, str(path))


def read_trials_jsonl(path: str | Path) -> list[Trial]:
    path = Path(path)
    trials = []
    for n, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}: line {n}: not valid JSON: {exc}") from None
        trials.append(trial_from_json(obj, f"{path}: line {n}"))
    return trials


def write_trials_jsonl(trials: Iterable[Trial], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(trial_to_json(t)) + "\n" for t in trials), encoding="utf-8")


class TrialFiles:
    """Trials in a directory (searched recursively) or one file. XML/JSON files in a directory
    are found by name (`<nct id>.xml`) and parsed on first access: the real corpus holds
    ~375,000 trials of which only the judged ones are needed. JSONL files are read at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._files: dict[str, Path] = {}
        self._trials: dict[str, Trial] = {}
        if self.path.is_file():
            for trial in self._read_file(self.path):
                self._add(trial, self.path)
        elif self.path.is_dir():
            for p in sorted(self.path.rglob("*")):
                suffix = p.suffix.lower()
                if suffix == ".jsonl":
                    for trial in read_trials_jsonl(p):
                        self._add(trial, p)
                elif suffix in (".xml", ".json") and p.is_file():
                    self._files.setdefault(p.stem, p)
        else:
            raise DataError(f"{self.path}: trials path not found; expected a directory of "
                            f"NCTxxxxxxxx.xml / .json files or a .jsonl file")

    @staticmethod
    def _read_file(path: Path) -> list[Trial]:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return read_trials_jsonl(path)
        if suffix == ".json":
            return [read_trial_json(path)]
        return [read_trial_xml(path)]

    def _add(self, trial: Trial, path: Path) -> None:
        if trial.nct_id in self._trials:
            raise DataError(f"{path}: trial {trial.nct_id}: field 'nct_id' repeated; expected one record per trial")
        self._trials[trial.nct_id] = trial

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._trials or trial_id in self._files

    def __getitem__(self, trial_id: str) -> Trial:
        if trial_id not in self._trials:
            path = self._files[trial_id]
            trial = self._read_file(path)[0]
            if trial.nct_id != trial_id:
                raise DataError(f"{path}: field 'nct_id': expected {trial_id} (the file name), got {trial.nct_id}")
            self._trials[trial_id] = trial
        return self._trials[trial_id]


def read_files(topics_path: str | Path, qrels_path: str | Path,
               trials_path: str | Path) -> tuple[dict[str, str], QrelRows, TrialFiles]:
    """The three local inputs, cross-checked: every qrels topic and trial must exist."""
    topics = read_topics(topics_path)
    trials = TrialFiles(trials_path)
    qrels: QrelRows = []
    for n, qid, docid, label in read_qrels_lines(qrels_path):
        if qid not in topics:
            raise DataError(f"{qrels_path}: line {n}: field 'topic': topic {qid} is not in {topics_path}")
        if docid not in trials:
            raise DataError(f"{qrels_path}: line {n}: field 'trial': no trial document for {docid} in "
                            f"{trials_path}; expected {docid}.xml, {docid}.json or a JSONL record")
        qrels.append((qid, docid, label))
    return topics, qrels, trials


# ---------------------------------------------------------------- ir_datasets
class IrTrials:
    """Trial lookup over an `ir_datasets` docs store; a document is fetched on first access."""

    def __init__(self, store: Any, origin: str):
        self.store, self.origin = store, origin
        self._trials: dict[str, Trial] = {}

    def __contains__(self, trial_id: object) -> bool:
        try:
            self[str(trial_id)]
        except KeyError:
            return False
        return True

    def __getitem__(self, trial_id: str) -> Trial:
        if trial_id not in self._trials:
            doc = self.store.get(trial_id)   # KeyError when absent
            if doc is None:
                raise KeyError(trial_id)
            where = f"{self.origin}: document {trial_id}"
            criteria = clean_text(getattr(doc, "eligibility", "") or "")
            if not criteria:
                raise DataError(f"{where}: field 'eligibility': empty; expected the eligibility criteria text")
            conditions = clean_text(getattr(doc, "condition", "") or "").splitlines()
            self._trials[trial_id] = Trial(str(doc.doc_id), (getattr(doc, "title", "") or "").strip(),
                                           tuple(conditions), criteria)
        return self._trials[trial_id]


def read_ir_dataset(ds: Any, origin: str) -> tuple[dict[str, str], QrelRows, IrTrials]:
    """Topics, qrels and a lazy trial lookup from an `ir_datasets` dataset object."""
    topics: dict[str, str] = {}
    for q in ds.queries_iter():
        text = clean_text(q.text or "")
        if not text:
            raise DataError(f"{origin}: query {q.query_id}: field 'text': empty; expected the patient description")
        topics[str(q.query_id)] = text
    qrels: QrelRows = []
    seen: set[tuple[str, str]] = set()
    for k, qrel in enumerate(ds.qrels_iter(), 1):
        qid, docid, label = str(qrel.query_id), str(qrel.doc_id), qrel.relevance
        where = f"{origin}: qrel #{k} (topic {qid}, trial {docid})"
        if isinstance(label, bool) or label not in (0, 1, 2):
            raise DataError(f"{where}: field 'relevance': expected 0, 1 or 2, got {label!r}")
        if qid not in topics:
            raise DataError(f"{where}: field 'query_id': topic {qid} has no query")
        if (qid, docid) in seen:
            raise DataError(f"{where}: field 'doc_id': pair repeated; expected unique (topic, trial) pairs")
        seen.add((qid, docid))
        qrels.append((qid, docid, int(label)))
    return topics, qrels, IrTrials(ds.docs_store(), origin)
