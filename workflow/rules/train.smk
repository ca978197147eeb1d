rule sft:
    input:
        model=f"{R}/models/{{model}}/base.json",
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/sft"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/sft"),
    params:
        settings=as_arg(config["sft"]),
        seed=SEED,
        model_flags=MODEL_FLAGS,
    threads: job_threads()
    priority: 2   # training starts first: the multi chain (sft -> grpo -> transfer) is the longest
    resources:
        **job_resources(),
    log:
        f"{R}/logs/sft/{{model}}/{{task}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} ehrmind sft --task {wildcards.task} --model {input.model}"
        " --train {input.train} --settings {params.settings} --seed {params.seed} {params.model_flags}"
        " --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"


rule grpo:
    input:
        model=lambda w: model_for("sft" if w.stage == "sft_rlvr" else "baseline").format(**w),
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/{{stage}}"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/{{stage}}"),
    wildcard_constraints:
        stage="rlvr|sft_rlvr",
    params:
        settings=lambda w: as_arg(grpo_settings(w.task)),
        reward=as_arg(config["reward"]),
        seed=SEED,
        model_flags=MODEL_FLAGS,
    threads: job_threads()
    priority: 1
    resources:
        **job_resources(),
    log:
        f"{R}/logs/grpo/{{model}}/{{task}}/{{stage}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} ehrmind grpo --task {wildcards.task} --model {input.model}"
        " --train {input.train} --settings {params.settings} --reward {params.reward}"
        " --stage {wildcards.stage} --seed {params.seed} {params.model_flags}"
        " --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"
