rule tables:
    input:
        cells=all_cells,
        transfer=transfer_dirs,
        passk=gate_files,
        training=training_dirs,
    output:
        reported_tables(table_files()),   # report(): workflow/rules/report.smk
    params:
        seed=SEED,
        out=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{R}/logs/tables.log",
    shell:
        "ehrmind tables {input.cells} --transfer {input.transfer}"
        " --passk {input.passk} --training {input.training} --out {params.out} --seed {params.seed} 2>&1 | tee {log}"
