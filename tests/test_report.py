"""The report: figures and pages from result files (both layouts: with and without a seed
level), byte-for-byte rebuilds, captions that render, and the tiny run's Snakemake report
opened in headless Chromium (screenshot kept; the main table must be on the rendered page)."""
from __future__ import annotations

import csv
import html.parser
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ehrmind import tables
from ehrmind.io import write_json, write_jsonl
from ehrmind.report import catalog, figures, pages, results
from tests.conftest import REPO, run_snakemake, run_stages, skip_unless_required

CATEGORIES = ("1 Main results", "2 Per task", "3 Transfer", "4 Pass@k gate", "5 Training", "7 Run")


# --- a small run's result files, written here ---

def _cell(root: Path, model: str, task: str, stage: str, correct: list[bool], seed: int | None,
          categories=("a", "b"), binary: bool = False, train_task: str | None = None) -> Path:
    """metrics.json and predictions.jsonl as `ehrmind evaluate` writes them; a seed level in the
    path (and the label) when seed is given."""
    from ehrmind.evaluate import summarize
    preds = []
    for i, ok in enumerate(correct):
        row = {"id": f"{task}-{i}", "category": categories[i % len(categories)], "correct": ok, "format_ok": True,
               "reward": 1.1 if ok else 0.1, "parse_error": None, "generated_tokens": 5, "parsed_value": int(ok)}
        if binary:
            gold = i % 3 == 0
            row.update(gold_label=int(gold), parsed_value=int(gold) if ok else int(not gold),
                       p_positive=round(((0.8 if gold else 0.3) + 0.05 * (i % 4)) if ok else 0.5, 3))
        preds.append(row)
    metrics = summarize(preds, 2 if binary else 0)
    cell = {"model": model, "task": task, "stage": stage, **({"seed": seed} if seed is not None else {}),
            **({"train_task": train_task} if train_task else {})}
    metrics.update(cell=cell, seed=seed or 0, provenance={"packages": {"ehrmind": "0.1.0", "torch": "2.13.0"},
                                                         "git_commit": "abc123", "device": {"device": "cpu"}})
    d = root / "cells" / model / task / stage
    d = d / f"seed{seed}" if seed is not None else d
    write_jsonl(d / "predictions.jsonl", preds)
    write_json(d / "metrics.json", metrics)
    return d / "metrics.json"


def _training_log(root: Path, model: str, task: str, stage: str, seed: int | None, steps: int = 4) -> Path:
    d = root / "training" / model / task / stage
    d = d / f"seed{seed}" if seed is not None else d
    history = [{"step": s, "reward": -2 + 0.5 * s, "rewards/accuracy/mean": 0.1 * s, "frac_reward_zero_std": 1 - 0.2 * s,
                "entropy": 0.7 - 0.05 * s, "loss": 0.0} for s in range(1, steps + 1)]
    write_jsonl(d / "train_log.jsonl", history)
    return d


def _make_run(root: Path, seeds: list[int | None]) -> None:
    """Two models x (a two-category task and a binary task) x four stages, per seed."""
    for seed in seeds:
        for m, shift in (("m1", 0), ("m2", 1)):
            for k, stage in enumerate(("baseline", "sft", "rlvr", "sft_rlvr")):
                correct = [(i + k + shift + (seed or 0)) % 3 != 0 for i in range(12)]
                _cell(root, m, "calc", stage, correct, seed)
                _cell(root, m, "risk", stage, correct, seed, categories=("x",), binary=True)
                if stage in ("rlvr", "sft_rlvr"):
                    _training_log(root, m, "calc", stage, seed)


@pytest.fixture(params=["flat", "seeds"])
def run(request, tmp_path) -> dict:
    """A run without a seed level (the layout before seeds) or with one and two seeds."""
    seeds = [None] if request.param == "flat" else [0, 1]
    _make_run(tmp_path, seeds)
    return {"root": tmp_path, "seeds": seeds, "layout": request.param}


def _transfer_csv(path: Path) -> Path:
    rows = [{"model": "m1", "train_task": "calc", "stage": "sft", "calc_diff_vs_baseline": 0.25, "calc_p_holm": 0.01,
             "risk_diff_vs_baseline": -0.1, "risk_p_holm": 0.4},
            {"model": "m1", "train_task": "risk", "stage": "sft", "calc_diff_vs_baseline": 0.0, "calc_p_holm": 1.0,
             "risk_diff_vs_baseline": 0.5, "risk_p_holm": 0.001},
            {"model": "m2", "train_task": "multi", "stage": "sft_rlvr", "calc_diff_vs_baseline": "",
             "calc_p_holm": "", "risk_diff_vs_baseline": -0.3, "risk_p_holm": 0.03}]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


# --- finding and labelling result files ---

def test_cells_are_found_by_folder_glob_or_file_in_either_layout(run):
    root = run["root"]
    by_dir = results.load_cells([root / "cells"])
    by_glob = results.load_cells([str(root / "cells/**/metrics.json")])
    assert len(by_dir) == len(by_glob) == 2 * 2 * 4 * len(run["seeds"])
    assert {c["seed"] for c in by_dir} == ({0} if run["layout"] == "flat" else {0, 1})   # flat: the run's seed
    one = results.load_cells([by_dir[0]["path"]])[0]
    assert {k: one[k] for k in ("model", "task", "stage")} == {k: by_dir[0][k] for k in ("model", "task", "stage")}
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        results.load_cells([str(root / "nothing_here/*/metrics.json")])


def test_training_logs_are_labelled_by_their_path(run):
    logs = results.load_training_logs([run["root"] / "training"])
    assert {(r["model"], r["task"], r["stage"]) for r in logs} == {
        (m, "calc", s) for m in ("m1", "m2") for s in ("rlvr", "sft_rlvr")}
    assert {r["seed"] for r in logs} == set(run["seeds"])


# --- figures ---

def test_stage_comparison_pools_seeds_and_draws_every_interval(run):
    cells = results.load_cells([run["root"] / "cells"])
    fig = figures.stage_comparison(cells, "calc")
    assert len(fig.axes) == 2 and figures.text_overlaps(fig) == []
    ax = fig.axes[0]
    # one errorbar container per stage, each with a point per category and "all"
    assert len(ax.containers) == 4 and all(len(c.lines[0].get_xdata()) == 3 for c in ax.containers)
    mine = [c["metrics"] for c in cells if c["model"] == "m1" and c["stage"] == "baseline" and c["task"] == "calc"]
    k, n = sum(m["n_correct"] for m in mine), sum(m["n"] for m in mine)
    assert ax.containers[0].lines[0].get_ydata()[-1] == pytest.approx(100 * k / n)   # pooled over the seeds
    assert ("pooled" in ax.get_title(loc="left")) == (len(run["seeds"]) > 1)


def test_roc_pr_curves_give_sklearns_areas(run):
    from sklearn.metrics import roc_auc_score
    cells = results.load_cells([run["root"] / "cells"], predictions=True)
    fig = figures.roc_pr(cells, "risk")
    assert figures.text_overlaps(fig) == []
    rows = [p for c in cells if (c["model"], c["task"], c["stage"]) == ("m1", "risk", "sft") for p in c["predictions"]]
    auc = roc_auc_score([p["gold_label"] for p in rows], [p["p_positive"] for p in rows])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"sft: AUROC {auc:.3f}" in labels
    with pytest.raises(ValueError, match="p_positive"):
        figures.roc_pr([{**c, "predictions": [{"id": "x", "gold_label": 1}]} for c in cells], "risk")


def test_transfer_heatmap_marks_significant_cells_and_frames_the_own_task(tmp_path):
    fig = figures.transfer_heatmap(_transfer_csv(tmp_path / "transfer.csv"))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "+25.0*" in texts and "-10.0" in texts and "+50.0*" in texts and "-30.0*" in texts
    assert "–" in texts   # no value: a dash, not a zero
    frames = [p for ax in fig.axes for p in ax.patches]
    assert len(frames) == 2   # calc on calc, risk on risk; multi has no own task
    assert figures.text_overlaps(fig) == []


def test_training_curves_put_every_grpo_job_of_a_model_on_one_page(run):
    logs = results.load_training_logs([str(run["root"] / "training")])
    fig = figures.training_curves(logs, "m1")
    assert len(fig.axes) == 4 and figures.text_overlaps(fig) == []
    assert all(len(ax.lines) == 2 * len(run["seeds"]) for ax in fig.axes)
    styles = {(line.get_marker(), str(line.get_linestyle())) for line in fig.axes[0].lines}
    assert len(styles) == len(fig.axes[0].lines)   # told apart without colour
    with pytest.raises(ValueError, match="no GRPO log"):
        figures.training_curves(logs, "m3")


def test_text_overlaps_finds_colliding_labels():
    fig = figures._figure(3, 2)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one label here")
    ax.text(0.52, 0.5, "another label")
    ax.set_ylabel("a y label far too long to fit beside so short an axis, it leaves the figure")
    found = figures.text_overlaps(fig)
    assert ("one label here", "another label") in found
    assert any(b == "<figure edge>" for _, b in found)


@pytest.mark.parametrize("ext", ["svg", "png"])
def test_a_deleted_figure_is_rebuilt_byte_for_byte(run, tmp_path, ext):
    outs = [tmp_path / f"{n}.{ext}" for n in ("stages_calc", "roc_pr_risk", "training_m1", "transfer")]
    args = dict(cells=[run["root"] / "cells"], transfer_table=_transfer_csv(tmp_path / "t.csv"),
                training=[run["root"] / "training"])
    figures.write(outs, **args)
    first = {p.name: p.read_bytes() for p in outs}
    for p in outs:
        p.unlink()
    figures.write(outs, **args)
    assert {p.name: p.read_bytes() for p in outs} == first
    if ext == "svg":
        text = first["stages_calc.svg"].decode()
        assert "<dc:date>" not in text and "Matplotlib v" not in text


def test_figures_cli_names_an_unknown_figure(run, tmp_path):
    with pytest.raises(ValueError, match="unknown figure"):
        figures.write([tmp_path / "histogram.svg"], cells=[run["root"] / "cells"])


# --- pages ---

def test_table_pages_render_the_tables_module_output(tmp_path):
    _make_run(tmp_path / "run", [0])
    written = tables.build([str(c["path"]) for c in results.load_cells([tmp_path / "run/cells"])], tmp_path / "tables")
    assert (tmp_path / "tables/main.md") in written
    page = pages.table_page(tmp_path / "tables/main.md", tmp_path / "main.html").read_text()
    caption, header, rows = pages.parse_markdown_table((tmp_path / "tables/main.md").read_text())
    assert 'id="ehrmind-main"' in page and caption.startswith("The paper's headline metric") and len(rows) == 2 * 4
    marked = sum(c.endswith(("+", "-")) for r in rows for c in r[2:])
    assert page.count('class="sig"') == marked
    with pytest.raises(ValueError, match="no pipe table"):
        pages.parse_markdown_table("just a caption\n")


def test_run_page_lists_config_and_provenance(run, tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("results_dir: r\nseed: 3\n")
    out = pages.run_page({"results_dir": "r", "seed": 3}, [cfg_file], [run["root"] / "cells"], tmp_path / "run.html")
    text = out.read_text()
    assert "abc123" in text and "2.13.0" in text and "results_dir: r" in text and str(cfg_file) in text


# --- catalog and captions ---

def _table_names(tasks, models):
    return (["main", "main_seeds", "significance", "classification", "transfer", "ehr", "robustness", "passk_cost",
             "passk_vs_rlvr_gain"]
            + [f"per_category_{t}" for t in tasks] + [f"passk_{m}" for m in models])


def test_every_table_and_figure_has_a_category_and_a_caption_that_renders():
    """Each caption is rendered the way Snakemake's report renders it (Jinja with the run's config,
    then docutils) and must give no docutils error (an unknown link target, say)."""
    import jinja2
    from docutils.core import publish_parts
    from ehrmind import config as run_config
    cfg = run_config.load(REPO / "workflow/config/tiny.yaml")
    tasks, models = list(cfg["tasks"]), list(cfg["models"])
    names = [f"tables/{n}.csv" for n in _table_names(tasks, models)] + ["report/run.html"]
    names += [f"report/figures/{n}" for n in catalog.figure_names(tasks, models, ["ehrshot"], True, True)]
    targets = {Path(n).name for n in names}
    links = "\n".join([".. _Workflow: javascript:x()", ".. _Statistics: javascript:x()"]
                      + [f".. _{c}: javascript:x()" for c in catalog.CATEGORIES]
                      + [f".. _{t}: javascript:x()" for t in targets])

    class Snakemake:
        config, rule, params, wildcards = cfg, "tables", {}, {}

    for name in names:
        e = catalog.entry(name)
        assert e["category"] in catalog.CATEGORIES and e["category"] != catalog.OTHER, name
        rst = (REPO / "workflow/report" / e["caption"]).read_text()
        text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(rst + "\n\n" + links).render(
            snakemake=Snakemake)
        body = publish_parts(text, writer="html", settings_overrides={"report_level": 2})["body"]
        assert "system-message" not in body, (name, body)
    assert catalog.entry("tables/eagrl_alignment.csv")["category"] == catalog.EAGRL
    assert catalog.entry("tables/something_new.csv")["category"] == catalog.OTHER


# --- the tiny run's report in a browser ---

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _browse(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000",
                               "--virtual-time-budget=15000", *args, url],
                              capture_output=True, text=True, timeout=180)


class _Tables(html.parser.HTMLParser):
    """Rendered elements only: HTMLParser does not parse the text of <script> as tags, so a table
    that is still inside the page's JavaScript data is not found."""

    def __init__(self):
        super().__init__()
        self.ids, self.rows, self._in = set(), {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self.ids.add(a["id"])
            self._in = a["id"]
            self.rows[self._in] = []
        elif tag == "tr" and self._in:
            self.rows[self._in].append([])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = None

    def handle_data(self, data):
        if self._in and self.rows[self._in] and data.strip():
            self.rows[self._in][-1].append(data.strip())


def _report_data(report: str, name: str):
    m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', report, re.S)
    assert m, f"report.html has no `var {name}`"
    return json.loads(m.group(1))


def test_the_report_opens_in_a_browser_with_the_main_table(tiny_run):
    config, res, cfg = tiny_run
    out = res / "report.html"
    started = time.perf_counter()
    proc = run_snakemake(config, "--report", str(out))
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = out.read_text(encoding="utf-8")
    size = out.stat().st_size
    print(f"report.html: {size / 1e6:.2f} MB, built in {seconds:.1f} s")
    assert size < 40e6, f"report.html is {size / 1e6:.1f} MB; switch `make report` to the .zip form"

    # Every category, each task a subcategory of "2 Per task"; every entry captioned without errors.
    categories, entries = _report_data(report, "categories"), _report_data(report, "results")
    assert set(CATEGORIES) <= set(categories), sorted(categories)
    assert set(categories["2 Per task"]) == set(cfg["tasks"])
    assert {"CSV", "LaTeX", "view"} <= {e["labels"]["file"] for e in entries.values()}
    for path, e in entries.items():
        assert e["caption"].strip() and "system-message" not in e["caption"], path
    figs = {Path(p).name for p in entries if Path(p).suffix in (".svg", ".png")}
    assert {"stages_medcalc.svg", "roc_pr_ehrshot.svg", "transfer.svg", "training_tiny-a.svg",
            "passk_vs_rlvr_gain.png"} <= figs

    chromium = _chromium()
    if chromium is None:
        skip_unless_required("chromium", "chromium is not installed (as root: .ci/install-chromium.sh)")
    shot = res / "report-screenshot.png"
    proc = _browse(chromium, out.as_uri(), f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-3000:]
    if os.environ.get("EHRMIND_ARTIFACTS"):
        Path(os.environ["EHRMIND_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["EHRMIND_ARTIFACTS"]) / "report-screenshot.png")
    from matplotlib.image import imread
    pixels = imread(shot)
    assert pixels.std() > 0.05, "the screenshot is blank"

    proc = _browse(chromium, out.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dom = _Tables()
    dom.feed(proc.stdout)
    assert "ehrmind-main" in dom.ids, f"the main table was not rendered; tables found: {sorted(dom.ids)}"
    header, *rows = dom.rows["ehrmind-main"]
    assert [r[:2] for r in rows] == [[m, s] for m in cfg["models"] for s in run_stages(cfg)]
    assert all(any(t in h for h in header) for t in cfg["tasks"])


def test_a_deleted_figure_of_the_run_is_rebuilt_with_the_same_bytes(tiny_run):
    """Snakemake reruns report_figures for a deleted figure; every figure comes back byte for byte."""
    config, res, _ = tiny_run
    figs = sorted((res / "report/figures").iterdir())
    before = {p.name: p.read_bytes() for p in figs}
    (res / "report/figures/transfer.svg").unlink()
    proc = run_snakemake(config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "report_figures" in proc.stdout + proc.stderr
    assert {p.name: p.read_bytes() for p in sorted((res / "report/figures").iterdir())} == before
