"""Seeded generator of synthetic MedCalc-Bench rows (the embedded data set).

Rows have the 14 v1.0 columns, every value a string as the CSV stores it.
Each row draws from its own `Random` seeded by (seed, calculator, index), so a
larger `n_per_category` extends a smaller one instead of reshuffling it.
"""
from __future__ import annotations

from random import Random

from ehrmind.tasks.medcalc.calculators import BY_CATEGORY, CATEGORIES, Calculator, solve
from ehrmind.tasks.medcalc.source import COLUMNS


def _limit(x: float) -> str:
    return repr(round(x, 8))  # 88.199 * 0.95 -> '83.78905', not float noise


def make_row(calc: Calculator, index: int, seed: int, row_number: int) -> dict[str, str]:
    r = Random(f"medcalc-{seed}-{calc.id}-{index}")  # str seeds hash with SHA-512: stable across runs
    x = calc.sample(r)
    answer, explanation = solve(calc, x)
    if calc.output_type == "decimal":
        lower, upper = _limit(float(answer) * 0.95), _limit(float(answer) * 1.05)
    else:
        lower = upper = answer
    row = {
        "Row Number": str(row_number), "Calculator ID": str(calc.id), "Calculator Name": calc.name,
        "Category": calc.category, "Output Type": calc.output_type, "Note ID": f"synthetic-{seed}-{calc.id}-{index}",
        "Note Type": "Template", "Patient Note": calc.note(r, x), "Question": calc.question(x),
        "Relevant Entities": repr(calc.entities(x)),  # a Python dict literal, as in the real CSV
        "Ground Truth Answer": answer, "Lower Limit": lower, "Upper Limit": upper,
        "Ground Truth Explanation": explanation,
    }
    assert tuple(row) == COLUMNS
    return row


def generate_rows(n_per_category: int, seed: int, first_row: int = 1) -> list[dict[str, str]]:
    """`n_per_category` rows for each of the 7 categories, calculators taking turns
    within a category; Row Numbers count up from `first_row`."""
    if n_per_category < 0:
        raise ValueError("n_per_category must be >= 0")
    rows: list[dict[str, str]] = []
    for category in CATEGORIES:
        calcs = BY_CATEGORY[category]
        for i in range(n_per_category):
            calc = calcs[i % len(calcs)]
            rows.append(make_row(calc, i // len(calcs), seed, first_row + len(rows)))
    return rows
