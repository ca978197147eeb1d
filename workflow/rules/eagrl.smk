# EAG-RL (arXiv 2508.13579) on the structured-EHR tasks, beside EHRMind's stages.
# Stage 1: expert-guided MCTS trajectories -> SFT (eag_sft); stage 2: GRPO with the expert-
# alignment reward and the adaptive clip (eag_rl); the ablations and RL baselines from the same
# stage-1 start; the prompting baselines evaluate the base model. With `eagrl.warmup` (this
# suite's device for models that never write the format) MCTS and stage 2 start from a format
# warm-up instead of the base model.


rule eag_warmup_data:
    input:
        f"{R}/data/{{task}}/train.jsonl",
    output:
        f"{R}/data/{{task}}/eag_warmup.jsonl",
    wildcard_constraints:
        task=_alternatives(EAG_TASKS) if EAG_TASKS else "none",
    log:
        f"{R}/logs/eag_warmup_data/{{task}}.log",
    shell:
        "ehrmind eag-warmup --train {input} --out {output} 2>&1 | tee {log}"


rule eag_sft:
    input:
        model=lambda w: eag_input(w.method).format(**w),
        rows=lambda w: (f"{R}/data/{{task}}/eag_warmup.jsonl" if w.method == "eag_warmup"
                        else f"{R}/eagrl/mcts/{{model}}/{{task}}/seed{{seed}}/trajectories.jsonl").format(**w),
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/{{method}}/seed{{seed}}"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/{{method}}/seed{{seed}}"),
    wildcard_constraints:
        method="eag_warmup|eag_sft",
    params:
        settings=lambda w: as_arg(eag_sft_settings(w.task)),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/{{method}}/{{model}}/{{task}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind launch sft"
        " --trajectories {input.rows} --stage {wildcards.method} --model {input.model} --settings {params.settings}"
        " --seed {wildcards.seed} {params.model_flags} --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"


rule mcts:
    input:
        model=lambda w: eag_input("mcts").format(**w),
        train=f"{R}/data/{{task}}/train.jsonl",
        experts=f"{R}/experts/{{task}}/ranked_features.jsonl",
    output:
        rows=f"{R}/eagrl/mcts/{{model}}/{{task}}/seed{{seed}}/trajectories.jsonl",
        meta=f"{R}/eagrl/mcts/{{model}}/{{task}}/seed{{seed}}/mcts.json",
    wildcard_constraints:
        task=_alternatives(EAG_TASKS) if EAG_TASKS else "none",
    params:
        settings=as_arg(config["eagrl"]["mcts"]),
        reward=as_arg(config["eagrl"]["reward"]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.rows),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/mcts/{{model}}/{{task}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind mcts --model {input.model}"
        " --train {input.train} --experts {input.experts} --settings {params.settings} --reward {params.reward}"
        " --seed {wildcards.seed} {params.model_flags} --out {params.out} 2>&1 | tee {log}"


rule eag_grpo:
    input:
        model=lambda w: eag_input(w.method).format(**w),
        train=f"{R}/data/{{task}}/train.jsonl",
        experts=f"{R}/experts/{{task}}/ranked_features.jsonl",
    output:
        model=directory(f"{R}/models/{{model}}/{{task}}/{{method}}/seed{{seed}}"),
        logs=directory(f"{R}/training/{{model}}/{{task}}/{{method}}/seed{{seed}}"),
    wildcard_constraints:
        method=_alternatives(EAG_RL_METHODS),
    params:
        kind=lambda w: EAG_RL_METHODS[w.method][0],
        settings=lambda w: as_arg(eag_grpo_settings(w.task)),
        reward=lambda w: as_arg({**config["eagrl"]["reward"], **EAG_RL_METHODS[w.method][2]}),
        method_settings=lambda w: as_arg(EAG_RL_METHODS[w.method][1]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/{{method}}/{{model}}/{{task}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind launch grpo --method {params.kind}"
        " --task {wildcards.task} --model {input.model} --train {input.train} --experts {input.experts}"
        " --settings {params.settings} --reward {params.reward} --method-settings {params.method_settings}"
        " --stage {wildcards.method} --seed {wildcards.seed} {params.model_flags}"
        " --out {output.model} --log-dir {output.logs} 2>&1 | tee {log}"


rule eag_evaluate:
    input:
        model=lambda w: eag_eval_model(w.method).format(**w),
        test=lambda w: f"{R}/data/{w.task}/test{'' if w.variant == 'main' else '_' + w.variant}.jsonl",
        experts=f"{R}/experts/{{task}}/ranked_features.jsonl",
    output:
        metrics=f"{R}/eagrl/cells/{{model}}/{{task}}/{{method}}/seed{{seed}}/{{variant}}/metrics.json",
    wildcard_constraints:
        task=_alternatives(EAG_TASKS) if EAG_TASKS else "none",
        method=_alternatives(EAG_METHODS),
        variant=r"main|shuffle[0-9.]+",
    params:
        settings=lambda w: as_arg(gen_settings(w.task)),
        reward=as_arg(config["eagrl"]["reward"]),
        style=lambda w: EAG_STYLES.get(w.method, "decompose"),
        shuffle=lambda w: f" shuffle_fraction={w.variant[len('shuffle'):]}" if w.variant != "main" else "",
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/eag_evaluate/{{model}}/{{task}}/{{method}}/seed{{seed}}/{{variant}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind evaluate --method eagrl"
        " --style {params.style} --model {input.model} --task {wildcards.task} --test {input.test}"
        " --settings {params.settings} --experts {input.experts} --reward {params.reward} --seed {wildcards.seed}"
        " {params.model_flags} --cell model={wildcards.model} stage={wildcards.method} seed={wildcards.seed}"
        "{params.shuffle} --out {params.out} 2>&1 | tee {log}"
