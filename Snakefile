# ehrmind: the EHRMind grid (models x tasks x stages) as one Snakemake DAG.
#
#   snakemake                                   # embedded profile (workflow/profiles/default)
#   snakemake --configfile my.yaml              # another run config
#   snakemake --workflow-profile workflow/profiles/gpu       # one machine with GPUs
#   snakemake --workflow-profile workflow/profiles/slurm     # on a SLURM cluster
#   snakemake --sdm apptainer                   # every job inside the pinned image (config key `container`)
#
# The config is chosen by the profile (or --configfile), validated against
# ehrmind/schemas/config.schema.yaml before any job starts. Rules are thin:
# each is one call of the `ehrmind` CLI.

include: "workflow/rules/common.smk"
include: "workflow/rules/report_common.smk"   # report() wrappers (tables.smk uses them) and targets


# `snakemake --report results/<run>/report.html`: the landing page's text (the main table, the run).
report: "workflow/report/workflow.rst"


# Only used with `--sdm apptainer`: every job then runs inside this image (config key
# `container`; by default the SIF built from the pinned GPU image, see containers/).
container: config["container"]


include: "workflow/rules/data.smk"
include: "workflow/rules/passk.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/expert.smk"
include: "workflow/rules/eagrl.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_cells,
        table_files(),
        report_files(),
    default_target: True
