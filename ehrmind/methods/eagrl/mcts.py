"""EAG-RL stage 1: expert-guided MCTS over reasoning steps, whose best trajectories become SFT data.

Paper (arXiv 2508.13579): a node is a partial trajectory, an edge appends one (subquestion, answer)
pair; selection by UCT; expansion samples several candidate next steps (a candidate may instead
finish with the final subquestion, features and answer); a one-step rollout from each new node to a
final answer is scored by the EAG-RL reward (expert Jaccard included); values back-propagate; the
top-k complete trajectories per patient (class-balanced patients, filtered on confidence and
feature alignment) are the SFT data.

This suite's choices (the paper publishes none of these):
- Every evaluated child counts as one simulation: it and each ancestor get one visit and its value
  (a terminal child: its reward; otherwise the mean reward of its `rollouts` rollouts). A selected
  terminal node is re-backed-up with its reward, without sampling. UCT = Q + c·sqrt(ln N_parent / N).
- A node at `max_depth` steps is expanded by forcing the final block: the prompt ends with
  "<Final subquestion>"; rollouts are forced the same way. A trajectory thus has ≤ max_depth steps.
- A candidate that is neither a well-formed step nor a final block becomes a dead terminal child
  with the unparseable reward. Identical candidates of one node are merged.
- Trees of all patients advance in lockstep: one sampler call carries the expansion prompts of every
  patient's selected node (n = branching each), one more the rollouts of all new children; so an
  iteration costs at most two calls whatever the number of patients.
- Kept: every distinct complete trajectory met (rollouts and terminal children), filtered
  (parseable, correct label if `correct_only`, |ŷ−0.5| ≥ min_confidence, R_att ≥ min_att), best
  reward first, `keep` per patient.
- Sampler contract: completions are continuations of the prompt text and include the stop string
  that ended them (HF `stop_strings` does; with vLLM set include_stop_str_in_output=True).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from random import Random
from typing import Any, Callable, Mapping, Sequence

from ehrmind.io import write_jsonl
from ehrmind.methods.eagrl import format as fmt
from ehrmind.methods.eagrl.reward import RewardConfig, Scored, judge


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()


Sampler = Callable[[list[str], int, SamplingSpec], list[list[str]]]
FINAL_PREFIX = f"<{fmt.FINAL_SUB}>"


@dataclass(frozen=True)
class MCTSConfig:
    iterations: int = 8          # simulations (selection → expansion → rollouts → backup) per patient
    max_depth: int = 3           # subquestion/answer steps before the final block is forced
    branching: int = 3           # candidates sampled per expansion
    rollouts: int = 1            # one-step rollouts per new child
    c_uct: float = 1.0           # rewards span about [−2.8, 0.6]: exploration of the same order
    keep: int = 2                # trajectories kept per patient
    min_confidence: float = 0.1  # |ŷ − 0.5| of a kept trajectory
    min_att: float = 0.2         # R_att of a kept trajectory (one of 5 expert features named alone)
    correct_only: bool = True
    step: SamplingSpec = SamplingSpec(stop=(f"</{fmt.ANS}>", f"</{fmt.FINAL}>"))
    rollout: SamplingSpec = SamplingSpec(stop=(f"</{fmt.FINAL}>",))

    def __post_init__(self):
        if min(self.iterations, self.branching, self.rollouts, self.keep) < 1 or self.max_depth < 0:
            raise ValueError("iterations, branching, rollouts and keep must be ≥ 1, max_depth ≥ 0")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None = None) -> "MCTSConfig":
        cfg = dict(cfg or {})
        unknown = set(cfg) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown MCTS keys: {sorted(unknown)}")
        for key in ("step", "rollout"):
            if isinstance(cfg.get(key), Mapping):
                spec = {**dataclasses.asdict(getattr(cls, key)), **cfg[key]}
                cfg[key] = SamplingSpec(**{**spec, "stop": tuple(spec["stop"])})
        return cls(**cfg)


@dataclass(frozen=True)
class Patient:
    id: str
    record: str
    label: int
    features: tuple[str, ...]

    @classmethod
    def from_example(cls, ex) -> "Patient":
        """From a structured-EHR task example: fields["record"], gold["label"], gold["features"]; the
        id is gold["patient_id"], the key of the expert's ranked_features.jsonl (the example's own
        id carries the task's name in front)."""
        return cls(str(ex.gold["patient_id"]), ex.fields["record"], int(ex.gold["label"]),
                   tuple(ex.gold["features"]))


def balanced_patients(patients: Sequence[Patient], per_class: int | None = None, seed: int = 0) -> list[Patient]:
    """The same number of patients of each label (`per_class`, default the smaller class), drawn
    with `seed`; original order kept."""
    by_label: dict[int, list[int]] = {}
    for i, p in enumerate(patients):
        by_label.setdefault(p.label, []).append(i)
    n = min(map(len, by_label.values()), default=0) if per_class is None else per_class
    rng = Random(seed)
    keep = {i for label in sorted(by_label) for i in rng.sample(by_label[label], min(n, len(by_label[label])))}
    return [p for i, p in enumerate(patients) if i in keep]


@dataclass(eq=False)
class Node:
    steps: tuple[str, ...] = ()
    parent: "Node | None" = None
    final: str | None = None        # the final block (or the dead candidate's text) of a terminal node
    scored: Scored | None = None    # a terminal node's score
    children: list["Node"] = field(default_factory=list)
    expanded: bool = False
    visits: int = 0
    value_sum: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.final is not None

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def nodes(self):
        yield self
        for c in self.children:
            yield from c.nodes()


def trajectory(steps: Sequence[str], final: str | None = None) -> str:
    return "\n".join([*steps, *([final] if final is not None else [])])


_STEP = re.compile(rf"\s*(<{fmt.SUB}>.*?</{fmt.SUB}>\s*<{fmt.ANS}>.*?</{fmt.ANS}>)", re.I | re.S)
_FINAL = re.compile(rf"\s*(<final\s+subquestion>.*?</final\s+answer>)", re.I | re.S)


def split_candidate(text: str) -> tuple[str, str]:
    """("step", text) for one well-formed (subquestion, answer) pair, ("final", text) for a final
    block, else ("dead", text). Text after the first complete unit is dropped."""
    for kind, pattern, tags in (("step", _STEP, 4), ("final", _FINAL, 6)):
        m = pattern.match(text)
        if m and len(fmt.TAG.findall(m.group(1))) == tags:
            return kind, m.group(1).strip()
    return "dead", text


@dataclass
class Tree:
    patient: Patient
    messages: list[dict[str, str]]
    prompt: str
    expert: Sequence[str]
    root: Node = field(default_factory=Node)
    candidates: dict[str, tuple[Scored, int]] = field(default_factory=dict)   # text → (score, steps)
    sampler_calls: int = 0
    completions: int = 0

    def score(self, text: str, steps: int, cfg: RewardConfig) -> Scored:
        s = judge(text, self.patient.label, self.patient.features, self.expert, cfg)
        self.candidates.setdefault(text, (s, steps))
        return s


def _select(node: Node, c_uct: float) -> Node:
    while node.expanded and node.children and not node.terminal:
        log_n = math.log(node.visits)
        node = max(node.children, key=lambda ch: ch.value + c_uct * math.sqrt(log_n / ch.visits))
    return node


def _backup(node: Node, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def _call(sampler: Sampler, prompts: list[str], n: int, spec: SamplingSpec) -> list[list[str]]:
    out = sampler(prompts, n, spec)
    if len(out) != len(prompts) or any(len(c) != n for c in out):
        raise ValueError(f"sampler returned {[len(c) for c in out]} completions for {len(prompts)} prompts × {n}")
    return out


def search(patients: Sequence[Patient], experts: Mapping[str, Sequence[str]], sampler: Sampler,
           question: str, cfg: MCTSConfig = MCTSConfig(), reward_cfg: RewardConfig = RewardConfig(),
           render: Callable[[list[dict[str, str]]], str] | None = None) -> tuple[list[Tree], int]:
    """Grow one tree per patient, in lockstep; return the trees and the number of sampler calls.
    `render` turns chat messages into the prompt text (a chat template with the generation
    prompt); by default system and user text are joined."""
    render = render or (lambda msgs: "\n\n".join(m["content"] for m in msgs) + "\n\n")
    trees = []
    for p in patients:
        if p.id not in experts:
            raise KeyError(f"no expert features for patient {p.id!r}")
        messages = fmt.build_messages(p.record, question, p.features)
        trees.append(Tree(p, messages, render(messages), experts[p.id]))
    calls = 0
    for _ in range(cfg.iterations):
        leaves = []
        for tree in trees:
            leaf = _select(tree.root, cfg.c_uct)
            if leaf.terminal:   # nothing to sample: back its reward up again
                _backup(leaf, leaf.scored.reward)
            else:
                leaves.append((tree, leaf))
        if not leaves:
            continue
        forced = [leaf.depth >= cfg.max_depth for _, leaf in leaves]
        prompts = [tree.prompt + trajectory(leaf.steps) + ("\n" if leaf.steps else "") + (FINAL_PREFIX if f else "")
                   for (tree, leaf), f in zip(leaves, forced)]
        expansions = _call(sampler, prompts, cfg.branching, cfg.step)
        calls += 1
        to_roll = []
        for (tree, leaf), texts, f in zip(leaves, expansions, forced):
            tree.sampler_calls += 1
            tree.completions += len(texts)
            leaf.expanded = True
            seen = set()
            for text in texts:
                kind, unit = split_candidate(FINAL_PREFIX + text if f else text)
                if unit in seen:
                    continue
                seen.add(unit)
                if kind == "step":
                    child = Node(leaf.steps + (unit,), leaf)
                    to_roll.append((tree, child))
                else:   # a final block, or a dead candidate scored as unparseable
                    child = Node(leaf.steps, leaf, final=unit)
                    child.scored = tree.score(trajectory(leaf.steps, unit), leaf.depth, reward_cfg)
                    _backup(child, child.scored.reward)
                leaf.children.append(child)
        if to_roll:
            prompts = [tree.prompt + trajectory(child.steps) + "\n" + FINAL_PREFIX for tree, child in to_roll]
            rollouts = _call(sampler, prompts, cfg.rollouts, cfg.rollout)
            calls += 1
            for tree in {id(t): t for t, _ in to_roll}.values():
                tree.sampler_calls += 1
            for (tree, child), texts in zip(to_roll, rollouts):
                tree.completions += len(texts)
                rewards = []
                for text in texts:
                    kind, unit = split_candidate(FINAL_PREFIX + text)
                    final = unit if kind == "final" else FINAL_PREFIX + text
                    rewards.append(tree.score(trajectory(child.steps, final), child.depth, reward_cfg).reward)
                _backup(child, sum(rewards) / len(rewards))
    return trees, calls


def failed_filters(s: Scored, cfg: MCTSConfig) -> list[str]:
    """The kept-trajectory filters a parseable candidate fails (none: it may be kept)."""
    checks = {"wrong_label": cfg.correct_only and not s.correct,
              "low_confidence": abs(s.probability - 0.5) < cfg.min_confidence,
              "low_r_att": s.r_att < cfg.min_att}
    return [name for name, failed in checks.items() if failed]


def kept(tree: Tree, cfg: MCTSConfig) -> list[tuple[str, Scored, int]]:
    """The tree's best complete trajectories that pass the filters, best reward first."""
    good = [(text, s, steps) for text, (s, steps) in tree.candidates.items()
            if s.parsed.ok and not failed_filters(s, cfg)]
    return sorted(good, key=lambda t: -t[1].reward)[:cfg.keep]   # stable: ties in discovery order


def sft_rows(trees: Sequence[Tree], cfg: MCTSConfig) -> list[dict[str, Any]]:
    """Rows the suite's SFT stage trains on: prompt messages, assistant completion, reward parts."""
    rows = []
    for tree in trees:
        for rank, (text, s, steps) in enumerate(kept(tree, cfg)):
            rows.append({"id": f"{tree.patient.id}/{rank}", "patient_id": tree.patient.id,
                         "label": tree.patient.label, "prompt": tree.messages,
                         "completion": [{"role": "assistant", "content": text}], "steps": steps,
                         **s.parts()})
    return rows


def stats(trees: Sequence[Tree], calls: int, cfg: MCTSConfig) -> dict[str, Any]:
    per = {t.patient.id: {"sampler_calls": t.sampler_calls, "completions": t.completions,
                          "nodes": sum(1 for _ in t.root.nodes()), "candidates": len(t.candidates),
                          "kept": len(kept(t, cfg))} for t in trees}
    return {"patients": len(trees), "sampler_calls": calls,
            "completions": sum(p["completions"] for p in per.values()),
            "rejected_by_filter": rejected_by_filter(trees, cfg), "per_patient": per}


def rejected_by_filter(trees: Sequence[Tree], cfg: MCTSConfig) -> dict[str, int]:
    """Parseable candidates failing each kept-trajectory filter (one may fail several): which
    filter empties a run's stage-1 data."""
    counts = dict.fromkeys(("wrong_label", "low_confidence", "low_r_att"), 0)
    for t in trees:
        for s, _ in t.candidates.values():
            for name in failed_filters(s, cfg) if s.parsed.ok else ():
                counts[name] += 1
    return counts


def build(patients: Sequence[Patient], experts: Mapping[str, Sequence[str]], sampler: Sampler, question: str,
          out_path, cfg: MCTSConfig = MCTSConfig(), reward_cfg: RewardConfig = RewardConfig(),
          render: Callable[[list[dict[str, str]]], str] | None = None) -> dict[str, Any]:
    """Search, write the kept trajectories as JSONL to `out_path`, return the cost statistics."""
    trees, calls = search(patients, experts, sampler, question, cfg, reward_cfg, render)
    write_jsonl(out_path, sft_rows(trees, cfg))
    return stats(trees, calls, cfg)
