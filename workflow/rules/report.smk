# The report's figures and pages, built from result files only by two thin rules; every file
# they write is marked with report() (helpers in report_common.smk). `snakemake --report
# results/<run>/report.html` (`make report`) then bundles them, the tables and the captions
# into one self-contained HTML file.


rule report_figures:
    input:
        cells=all_cells,
        transfer=f"{R}/tables/transfer.csv" if TRANSFER else [],
        training=grpo_log_dirs,
    output:
        reported(figure_files()),
    params:
        transfer=lambda w, input: f"--transfer-table {input.transfer}" if TRANSFER else "",
    log:
        f"{R}/logs/report/figures.log",
    shell:
        "ehrmind figures {output} --cells {input.cells} {params.transfer} --training {input.training} 2>&1 | tee {log}"


rule report_pages:
    input:
        tables=[f for f in table_files() if f.endswith(".md")],
        cells=all_cells,
    output:
        reported(page_files()),
        landing=f"{REPORT_DIR}/landing.html",
    params:
        tables=lambda w, input: os.path.dirname(input.tables[0]),
        config=as_arg(config),
        config_files=" ".join(shlex.quote(f) for f in CONFIG_FILES),
    log:
        f"{R}/logs/report/pages.log",
    shell:
        "ehrmind report-pages {output} --tables {params.tables} --config {params.config}"
        " --config-file {params.config_files} --cells {input.cells} 2>&1 | tee {log}"
