# Helpers for the report (`snakemake --report results/<run>/report.html`, `make report`): the
# report() wrapper that files each table and figure under its category with its caption
# (ehrmind/report/catalog.py, workflow/report/*.rst), and the report's targets. Included before
# the rule files, since tables.smk wraps its outputs with reported_tables(); the rules that draw
# the figures and pages are in report.smk.
from ehrmind.report import catalog

REPORT_DIR = f"{R}/report"
BINARY_TASKS = catalog.binary_tasks(TASKS)
GRPO_STAGES = [s for s in STAGES if s in ("rlvr", "sft_rlvr")]
# The config files the run was given (the default when none), shown on the run page.
CONFIG_FILES = [str(f) for f in workflow.overwrite_configfiles] or [DEFAULT_CONFIG]


def reported(paths):
    """Each path wrapped in report() with its category, subcategory, labels and caption."""
    out = []
    for path in paths:
        e = catalog.entry(path)
        out.append(report(path, caption=f"../report/{e['caption']}", category=e["category"],
                          subcategory=e["subcategory"], labels=e["labels"]))
    return out


def reported_tables(paths):
    """The tables rule's outputs for the report: the CSV and LaTeX files (offered for download)
    and the pass@k figure; the Markdown is shown as an HTML page instead (report_pages)."""
    return [p if p.endswith(".md") else reported([p])[0] for p in paths]


def figure_files():
    names = catalog.figure_names(TASKS, MODELS, BINARY_TASKS, TRANSFER, bool(GRPO_STAGES))
    return [f"{REPORT_DIR}/figures/{n}" for n in names]


def table_names():
    return list(dict.fromkeys(os.path.basename(f).rsplit(".", 1)[0] for f in table_files() if f.endswith(".md")))


def page_files():
    return [f"{REPORT_DIR}/tables/{n}.html" for n in table_names()] + [f"{REPORT_DIR}/run.html"]


def report_files():
    """What rule all asks for so that every report entry exists (the landing fragment too)."""
    return figure_files() + page_files() + [f"{REPORT_DIR}/landing.html"]


def grpo_log_dirs(wildcards=None):
    """Training log folders of the GRPO jobs, every seed (in gated mode the gate decides which run)."""
    return [f"{R}/training/{m}/{t}/{s}/seed{seed}" for m, t, s, seed in checkpoints_run(TRAIN_TASKS)
            if s in ("rlvr", "sft_rlvr", "primer_rlvr")] + [d for d in eag_training_dirs() if d.split("/")[-2] in EAG_RL_METHODS]
