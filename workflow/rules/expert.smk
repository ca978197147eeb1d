# The expert EHR model (ConCare) per structured-EHR task: its test AUROC/AUPRC is a row of the
# `ehr` table, and each patient's features ranked by its attention guide EAG-RL.
# It trains on the task's whole training split (--data), not on prepare_data's train.jsonl, which
# train_examples may cut to the few examples the LLM's SFT gets (16 of 335 patients embedded).
rule expert:
    output:
        metrics=f"{R}/experts/{{task}}/metrics.json",
        ranked=f"{R}/experts/{{task}}/ranked_features.jsonl",
    wildcard_constraints:
        task=_alternatives(EHR_TASKS) if EHR_TASKS else "none",
    params:
        settings=as_arg({k: v for k, v in config["expert"].items() if k != "enabled"}),
        data=lambda w: as_arg(data_settings(w.task)),
        seed=DATA_SEED,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: 1
    log:
        f"{R}/logs/expert/{{task}}.log",
    shell:
        "OMP_NUM_THREADS={threads} ehrmind expert --task {wildcards.task} --data {params.data}"
        " --settings {params.settings} --seed {params.seed} --out {params.out} 2>&1 | tee {log}"
