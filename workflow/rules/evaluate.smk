TRANSFER_TEST = "test_transfer" if config["transfer"]["test_per_category"] else "test"


def eval_args(tasks, out_dir):
    """--task/--test/--settings/--out for each task a loaded model is evaluated on."""
    return " ".join(f"--task {t} --test {R}/data/{t}/{TRANSFER_TEST}.jsonl --settings {as_arg(gen_settings(t))}"
                    f" --out {out_dir}/{t}" for t in tasks)


rule evaluate:
    input:
        model=lambda w: model_for(w.stage).format(**w),
        test=f"{R}/data/{{task}}/test.jsonl",
    output:
        metrics=f"{R}/cells/{{model}}/{{task}}/{{stage}}/seed{{seed}}/metrics.json",
        predictions=f"{R}/cells/{{model}}/{{task}}/{{stage}}/seed{{seed}}/predictions.jsonl",
    wildcard_constraints:
        task=_alternatives(TASKS),
    params:
        settings=lambda w: as_arg(gen_settings(w.task)),
        reward=as_arg(config["reward"]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/evaluate/{{model}}/{{task}}/{{stage}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind evaluate --model {input.model} --task {wildcards.task}"
        " --test {input.test} --settings {params.settings} --reward {params.reward} --seed {wildcards.seed}"
        " {params.model_flags} --cell model={wildcards.model} stage={wildcards.stage} seed={wildcards.seed}"
        " --out {params.out} 2>&1 | tee {log}"


# One job per trained checkpoint: the model is loaded once and evaluated on the other tasks of its family.
rule transfer:
    input:
        model=f"{R}/models/{{model}}/{{task}}/{{stage}}/seed{{seed}}",
        tests=lambda w: [f"{R}/data/{t}/{TRANSFER_TEST}.jsonl" for t in eval_tasks(w.task)],
    output:
        directory(f"{R}/transfer/{{model}}/{{task}}/{{stage}}/seed{{seed}}"),
    wildcard_constraints:
        stage="sft|rlvr|sft_rlvr",
    params:
        evals=lambda w, output: eval_args(eval_tasks(w.task), output[0]),
        reward=as_arg(config["reward"]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/transfer/{{model}}/{{task}}/{{stage}}/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind evaluate --model {input.model} {params.evals}"
        " --reward {params.reward} --seed {wildcards.seed} {params.model_flags}"
        " --cell model={wildcards.model} stage={wildcards.stage} seed={wildcards.seed} train_task={wildcards.task}"
        " 2>&1 | tee {log}"


# Structured-EHR checkpoints on test records with a share of the feature order shuffled.
rule robustness:
    input:
        model=f"{R}/models/{{model}}/{{task}}/{{stage}}/seed{{seed}}",
        test=f"{R}/data/{{task}}/test_shuffle{{fraction}}.jsonl",
    output:
        metrics=f"{R}/robustness/{{model}}/{{task}}/{{stage}}/seed{{seed}}/shuffle{{fraction}}/metrics.json",
    wildcard_constraints:
        task=_alternatives(EHR_TASKS) if EHR_TASKS else "none",
        fraction=r"[0-9.]+",
    params:
        settings=lambda w: as_arg(gen_settings(w.task)),
        reward=as_arg(config["reward"]),
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/robustness/{{model}}/{{task}}/{{stage}}/seed{{seed}}/shuffle{{fraction}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind evaluate --model {input.model}"
        " --task {wildcards.task} --test {input.test} --settings {params.settings} --reward {params.reward}"
        " --seed {wildcards.seed} {params.model_flags} --cell model={wildcards.model} stage={wildcards.stage}"
        " seed={wildcards.seed} shuffle_fraction={wildcards.fraction} --out {params.out} 2>&1 | tee {log}"
