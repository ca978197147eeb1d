"""HTML pages for the report, from result files only.

- table pages:   each tables/<name>.md (caption, then a GitHub pipe table, as tables.py
                 writes it) as a standalone HTML page; the report shows it in a frame, where
                 a Markdown or CSV file would only be offered for download
- run page:      the validated run configuration, the config files as written, and the
                 package versions, git commit and device recorded in the cells' provenance
- landing:       an HTML fragment the workflow description (workflow/report/workflow.rst)
                 includes: the main table with its caption and what the run was

Every page is self-contained (inline style, no scripts, no external resources) and
deterministic: the same inputs give the same bytes.
"""
from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import yaml

from ehrmind.io import atomic_path
from ehrmind.report.results import load_cells

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 1.2rem;
       color: #111; background: #fff; }
h1 { font-size: 1.15rem; margin: 0 0 .5rem 0; } h2 { font-size: 1rem; margin: 1.2rem 0 .4rem 0; }
p.caption { max-width: 62rem; line-height: 1.4; font-size: .9rem; }
table.ehrmind { border-collapse: collapse; font-size: .82rem; font-variant-numeric: tabular-nums; }
table.ehrmind th, table.ehrmind td { border: 1px solid #bbb; padding: .2rem .45rem; text-align: left;
       vertical-align: top; white-space: nowrap; }
table.ehrmind th { background: #eee; }
table.ehrmind tr:nth-child(even) td { background: #f7f7f7; }
table.ehrmind td.sig { font-weight: bold; text-decoration: underline; }
pre { background: #f4f4f4; padding: .6rem; font-size: .78rem; overflow-x: auto; }
p.source { color: #555; font-size: .78rem; }
"""
# A significance mark written by tables.py: "... [lo, hi]+" (main) or "(+33.3+)" (transfer).
SIG = re.compile(r"(\]|\d)[+-]\)?$")


def parse_markdown_table(text: str, source: str = "table") -> tuple[str, list[str], list[list[str]]]:
    """(caption, header, rows) of a file written by tables._write: caption paragraph(s), a blank
    line, then a GitHub pipe table."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None or start + 1 >= len(lines) or not set(lines[start + 1]) <= set("|-: "):
        raise ValueError(f"{source}: no pipe table (a header row, then a |---| row)")
    caption = " ".join(line.strip() for line in lines[:start] if line.strip())

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(lines[start])
    rows = [cells(line) for line in lines[start + 2:] if line.startswith("|")]
    for i, row in enumerate(rows, start + 3):
        if len(row) != len(header):
            raise ValueError(f"{source}: line {i} has {len(row)} cells, the header {len(header)}")
    return caption, header, rows


def _inline(text: str) -> str:
    """Escape, then `code` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def table_html(header: list[str] | None, rows: list[list[str]], table_id: str) -> str:
    out = [f'<table class="ehrmind" id="{html.escape(table_id)}">']
    if header:
        out += ["<thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="sig">{html.escape(c)}</td>' if SIG.search(c) else
                                    f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _write(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def table_page(md: str | Path, out: str | Path) -> Path:
    """tables/<name>.md as a standalone HTML page (id of the table: ehrmind-<name>)."""
    md = Path(md)
    caption, header, rows = parse_markdown_table(md.read_text(encoding="utf-8"), str(md))
    body = (f'<p class="caption">{_inline(caption)}</p>\n{table_html(header, rows, f"ehrmind-{md.stem}")}\n'
            f'<p class="source">From {html.escape(md.name)}; the same table as {html.escape(md.stem)}.csv '
            f"(unrounded numbers) and {html.escape(md.stem)}.tex. Bold and underlined: a significance mark.</p>")
    return _write(Path(out), _page(md.stem.replace("_", " "), body))


def _distinct(values: Iterable[Any]) -> list[tuple[str, int]]:
    counts = Counter(json.dumps(v, sort_keys=True) for v in values)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def provenance(cells: list[dict[str, Any]]) -> dict[str, list[tuple[Any, int]]]:
    """Distinct package-version sets, git commits and devices over the cells, with counts."""
    prov = [c["metrics"].get("provenance", {}) for c in cells]
    return {"packages": [(json.loads(v), n) for v, n in _distinct(p.get("packages") for p in prov)],
            "git_commit": [(json.loads(v), n) for v, n in _distinct(p.get("git_commit") for p in prov)],
            "device": [(json.loads(v), n) for v, n in _distinct(p.get("device") for p in prov)]}


def run_page(config: dict[str, Any], config_files: list[str | Path], cells: list[str | Path],
             out: str | Path) -> Path:
    """The run's configuration and provenance as one page."""
    records = load_cells(cells)
    prov = provenance(records)
    parts = [f"<p>{len(records)} result cells (metrics.json). Versions, commit and device below are those "
             f"the cells recorded when they were computed; where cells disagree, each variant is listed with "
             f"the number of cells that recorded it.</p>"]
    parts.append("<h2>Package versions</h2>")
    for packages, n in prov["packages"]:
        rows = [[k, str(v)] for k, v in sorted((packages or {}).items())]
        parts.append(f"<p>{n} cell{'s' if n != 1 else ''}:</p>" + table_html(["package", "version"], rows,
                                                                                "ehrmind-packages"))
    parts.append("<h2>Git commit</h2><ul>" + "".join(
        f"<li><code>{html.escape(str(c))}</code> ({n} cells)</li>" for c, n in prov["git_commit"]) + "</ul>")
    parts.append("<h2>Device</h2>")
    for device, n in prov["device"]:
        rows = [[k, str(v)] for k, v in sorted((device or {}).items())]
        parts.append(f"<p>{n} cell{'s' if n != 1 else ''}:</p>" + table_html(["key", "value"], rows, "ehrmind-device"))
    parts.append("<h2>Run configuration (validated, defaults filled in)</h2>")
    parts.append(f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))}</pre>")
    for f in map(Path, config_files):
        text = f.read_text(encoding="utf-8") if f.is_file() else "(not found)"
        parts.append(f"<h2>Config file as written: {html.escape(str(f))}</h2><pre>{html.escape(text)}</pre>")
    return _write(Path(out), _page("Run configuration and provenance", "\n".join(parts)))


def landing(main_md: str | Path, config: dict[str, Any], config_files: list[str | Path],
            cells: list[str | Path], out: str | Path) -> Path:
    """The fragment the workflow description includes: what the run was, and the main table."""
    caption, header, rows = parse_markdown_table(Path(main_md).read_text(encoding="utf-8"), str(main_md))
    prov = provenance(load_cells(cells))
    commits = ", ".join(str(c) for c, _ in prov["git_commit"])
    # Models and tasks in the main table's order (the config reaches this verb as JSON with sorted keys).
    specs = config.get("models") or {}
    models = list(dict.fromkeys([r[0] for r in rows if r and r[0] in specs] + list(specs)))
    tasks = [t for h in header for t in [h.split(" ", 1)[0]] if t in (config.get("tasks") or {})]
    tasks += [t for t in (config.get("tasks") or {}) if t not in tasks]
    facts = [("run config", ", ".join(map(str, config_files)) or "(none)"),
             ("results", str(config.get("results_dir", ""))),
             ("models", ", ".join(f"{m} ({specs[m]})" for m in models)),
             ("tasks", ", ".join(tasks)),
             ("stages", ", ".join(config.get("stages") or [])),
             ("seed", str(config.get("seed", ""))),
             ("git commit of the cells", commits)]
    # The report shows this description in a narrow column beside the rule graph; widen it.
    css = ('<style>.prose:has(#ehrmind-landing){max-width:none}'
           "#ehrmind-landing table.ehrmind{border-collapse:collapse;font-size:.8rem;margin:.3rem 0}"
           "#ehrmind-landing th,#ehrmind-landing td{border:1px solid #888;padding:.15rem .4rem;"
           "white-space:nowrap;text-align:left}"
           "#ehrmind-landing td.sig{font-weight:bold;text-decoration:underline}</style>")
    body = [css, '<div id="ehrmind-landing">', "<h3>Main results</h3>",
            table_html(header, rows, "ehrmind-main"), f"<p>{_inline(caption)}</p>", "<h3>This run</h3>",
            table_html(None, [[k, v] for k, v in facts], "ehrmind-run"), "</div>"]
    return _write(Path(out), "\n".join(body) + "\n")


def write(outputs: list[str | Path], tables_dir: str | Path, config: dict[str, Any],
          config_files: list[str | Path], cells: list[str | Path]) -> list[Path]:
    """Write each named page; the file name says which: <table>.html (from tables_dir/<table>.md),
    run.html, landing.html."""
    written = []
    for out in map(Path, outputs):
        if out.name == "run.html":
            written.append(run_page(config, config_files, cells, out))
        elif out.name == "landing.html":
            written.append(landing(Path(tables_dir) / "main.md", config, config_files, cells, out))
        elif out.suffix == ".html":
            written.append(table_page(Path(tables_dir) / f"{out.stem}.md", out))
        else:
            raise ValueError(f"{out}: pages are <table>.html, run.html or landing.html")
    return written
