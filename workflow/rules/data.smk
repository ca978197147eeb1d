rule prepare_data:
    output:
        train=f"{R}/data/{{task}}/train.jsonl",
        test=f"{R}/data/{{task}}/test.jsonl",
    params:
        data=lambda w: as_arg(data_settings(w.task)),
        seed=DATA_SEED,
    wildcard_constraints:
        task=_alternatives(TASKS),
    log:
        f"{R}/logs/prepare_data/{{task}}.log",
    shell:
        "ehrmind prepare-data --task {wildcards.task} --data {params.data} --seed {params.seed}"
        " --train-out {output.train} --test-out {output.test} 2>&1 | tee {log}"


# The test records again with a share of the features' order shuffled (EAG-RL's robustness experiment).
rule prepare_shuffled:
    output:
        f"{R}/data/{{task}}/test_shuffle{{fraction}}.jsonl",
    params:
        data=lambda w: as_arg({**data_settings(w.task), "shuffle_fraction": float(w.fraction)}),
        seed=DATA_SEED,
    wildcard_constraints:
        task=_alternatives(EHR_TASKS) if EHR_TASKS else "none",
        fraction=r"[0-9.]+",
    log:
        f"{R}/logs/prepare_data/{{task}}_shuffle{{fraction}}.log",
    shell:
        "ehrmind prepare-data --task {wildcards.task} --data {params.data} --seed {params.seed}"
        " --test-out {output} 2>&1 | tee {log}"


# The transfer matrix may evaluate on a fixed, seeded subset of each test split (transfer.test_per_category).
rule transfer_test:
    input:
        f"{R}/data/{{task}}/test.jsonl",
    output:
        f"{R}/data/{{task}}/test_transfer.jsonl",
    params:
        per_category=config["transfer"]["test_per_category"] or 0,
        seed=DATA_SEED,
    log:
        f"{R}/logs/prepare_data/{{task}}_transfer.log",
    shell:
        "ehrmind subsample {input} --per-category {params.per_category} --seed {params.seed} --out {output}"
        " 2>&1 | tee {log}"


rule merge_train:
    input:
        [f"{R}/data/{t}/train.jsonl" for t in MULTI_TASKS],
    output:
        f"{R}/data/{MULTI}/train.jsonl",
    log:
        f"{R}/logs/prepare_data/{MULTI}.log",
    shell:
        "ehrmind merge-train {input} --out {output} 2>&1 | tee {log}"


rule prepare_model:
    output:
        f"{R}/models/{{model}}/base.json",
    params:
        spec=lambda w: shlex.quote(config["models"][w.model]),
        cache=shlex.quote(config["model_cache"]),
    log:
        f"{R}/logs/prepare_model/{{model}}.log",
    shell:
        "ehrmind prepare-model --spec {params.spec} --cache {params.cache} --out {output} 2>&1 | tee {log}"
