rule tables:
    input:
        cells=all_cells,
        transfer=transfer_dirs,
        passk=gate_files,
        training=training_dirs,
        experts=expert_files,
        robustness=robustness_files,
        eagrl=eag_cells,
        eag_training=eag_training_dirs,
    output:
        reported_tables(table_files()),   # report(): workflow/rules/report_common.smk
    params:
        seed=DATA_SEED,
        n_resamples=config["bootstrap_resamples"],
        robustness="--robustness" if ROBUSTNESS and config["robustness"]["stages"] else "",
        out=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{R}/logs/tables.log",
    shell:
        "ehrmind tables {input.cells} --transfer {input.transfer} --passk {input.passk} --training {input.training}"
        " --experts {input.experts} {params.robustness} {input.robustness} --eagrl {input.eagrl}"
        " --eagrl-training {input.eag_training} --n-resamples {params.n_resamples}"
        " --out {params.out} --seed {params.seed} 2>&1 | tee {log}"
