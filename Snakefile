# ehrmind: the EHRMind grid (models x tasks x stages) as one Snakemake DAG.
#
#   snakemake                                   # embedded profile (workflow/profiles/default)
#   snakemake --configfile my.yaml              # another run config
#   snakemake --profile workflow/profiles/slurm # on a SLURM cluster
#
# The config is chosen by the profile (or --configfile), validated against
# ehrmind/schemas/config.schema.yaml before any job starts. Rules are thin:
# each is one call of the `ehrmind` CLI.

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/passk.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        all_cells,
        table_files(),
    default_target: True
