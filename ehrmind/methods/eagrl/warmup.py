"""A format warm-up on rule-built trajectories: this suite's own device, not EAG-RL's.

EAG-RL's stage 1 samples reasoning steps from the base model with MCTS; its 3B-8B backbones
write the <Subquestion>/<Answer>/.../<Final answer> layout when asked. The embedded 135M model
never does (0 of 76 outputs measured: greedy, sampled, forced final blocks, GRPO rollouts), so MCTS
keeps nothing and both stages learn nothing. Where `eagrl.warmup` is on, a short SFT on these
rule-built completions first teaches the layout, as EHRMind's SFT warm-up teaches its own; MCTS
and stage 2 then start from that checkpoint. The tables label it.

A trajectory asks, for the record's most abnormal last values (distance outside the reference
range, from the record alone, never the expert's ranking), what the value is and how it sits
against its range; states those features as the important ones; and gives 0.9 or 0.1 by the
outcome (EHRMind's SFT targets state the gold answer too; 0 or 1 exactly would teach certainty).
"""
from __future__ import annotations

import math
from typing import Any

from ehrmind.methods.eagrl import format as fmt
from ehrmind.tasks import Example
from ehrmind.tasks.ehr import SFT_PROBABILITY, _deviation
from ehrmind.tasks.ehr.features import describe
from ehrmind.tasks.ehr.serialize import number, parse_record

STEPS = 2        # subquestions per trajectory
FEATURES = 3     # features stated as important


def _last(values: tuple[float, ...]) -> float:
    return next((v for v in reversed(values) if not math.isnan(v)), math.nan)


def trajectory(example: Example) -> str:
    record = parse_record(example.fields["record"], example.gold["features"])
    last = {name: _last(values) for name, values in record.values.items()}
    measured = [n for n in example.gold["features"] if not math.isnan(last[n])]
    ranked = sorted(measured, key=lambda n: -_deviation(n, last[n]))
    steps = []
    for name in ranked[:STEPS]:
        f = describe(name)
        unit = f" {f.unit}" if f.unit else ""
        if f.low is None or f.high is None:
            where = "no reference range is given"
        else:
            where = ("above" if last[name] > f.high else "below" if last[name] < f.low else "within") + \
                f" the reference range {f.normal()}"
        steps.append((f"What is the patient's latest {name}?", f"{number(last[name])}{unit}, {where}."))
    return fmt.render_completion(steps, example.fields["question"], ranked[:FEATURES],
                                 SFT_PROBABILITY[example.gold["label"]])


def rows(examples: list[Example]) -> list[dict[str, Any]]:
    """SFT rows in the layout of MCTS's trajectories.jsonl (prompt messages, assistant completion)."""
    return [{"id": ex.id, "patient_id": ex.gold["patient_id"], "label": ex.gold["label"],
             "prompt": fmt.build_messages(ex.fields["record"], ex.fields["question"], ex.gold["features"]),
             "completion": [{"role": "assistant", "content": trajectory(ex)}]} for ex in examples]
