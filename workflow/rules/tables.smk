rule tables:
    input:
        all_cells(),
    output:
        table_files(),
    params:
        out=f"{R}/tables",
    log:
        f"{R}/logs/tables.log",
    shell:
        "ehrmind tables {input} --out {params.out} --seed {SEED} 2>&1 | tee {log}"
