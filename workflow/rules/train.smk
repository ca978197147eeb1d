# Training jobs run as `ehrmind launch VERB`: plainly on the CPU or one GPU, under accelerate with
# FSDP (workflow/accelerate/fsdp.yaml) when the run config gives a job more than one GPU.
rule sft:
    input:
        model=f"{R}/models/{{model}}/base.json",
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/{{stage}}/seed{{seed}}"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/{{stage}}/seed{{seed}}"),
    wildcard_constraints:
        stage="sft|primer",
    params:
        settings=lambda w: as_arg(sft_settings(w.task, w.stage)),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
    threads: job_threads()
    priority: 2   # training starts first: the multi chain (sft -> grpo -> transfer) is the longest
    resources:
        **job_resources(),
    log:
        f"{R}/logs/{{stage}}/{{model}}/{{task}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind launch sft --task {wildcards.task}"
        " --stage {wildcards.stage} --model {input.model} --train {input.train} --settings {params.settings} --seed {wildcards.seed}"
        " {params.model_flags} --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"


rule grpo:
    input:
        model=lambda w: model_for({"sft_rlvr": "sft", "primer_rlvr": "primer"}.get(w.stage, "baseline")).format(**w),
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/{{stage}}/seed{{seed}}"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/{{stage}}/seed{{seed}}"),
    wildcard_constraints:
        stage="rlvr|sft_rlvr|primer_rlvr",
    params:
        settings=lambda w: as_arg(grpo_settings(w.task)),
        reward=as_arg(config["reward"]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
    threads: job_threads()
    priority: 1
    resources:
        **job_resources(),
    log:
        f"{R}/logs/grpo/{{model}}/{{task}}/{{stage}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind launch grpo --task {wildcards.task}"
        " --model {input.model} --train {input.train} --settings {params.settings} --reward {params.reward}"
        " --stage {wildcards.stage} --seed {wildcards.seed} {params.model_flags}"
        " --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"
