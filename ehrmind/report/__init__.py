"""The run's report: what a reviewer reads.

`snakemake --report results/<run>/report.html` (`make report`) bundles every table and
figure marked with Snakemake's report() flag into one self-contained HTML file. This
package makes what that report shows beyond the tables themselves, from result files only:

- results.py:  find and label result files (cells, transfer cells, training logs) by path,
               directory or glob; labels come from metrics["cell"], so a seed level in the
               layout is read, not assumed
- figures.py:  the paper's figures (stage comparison per task, transfer heatmap, GRPO
               training curves per model, ROC and precision-recall of the binary tasks),
               black-and-white readable, byte-for-byte reproducible
- pages.py:    each table as a standalone HTML page, the run page (config, versions,
               commit, device) and the landing fragment with the main table
- catalog.py:  which report category, subcategory and labels each table and figure gets
               (used by workflow/rules/report.smk)
"""
