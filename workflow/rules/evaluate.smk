def eval_args(tasks, out_dir):
    """--task/--test/--settings/--out for each task a loaded model is evaluated on."""
    return " ".join(f"--task {t} --test {R}/data/{t}/test.jsonl --settings {as_arg(gen_settings(t))}"
                    f" --out {out_dir}/{t}" for t in tasks)


rule evaluate:
    input:
        model=lambda w: model_for(w.stage).format(**w),
        test=f"{R}/data/{{task}}/test.jsonl",
    output:
        metrics=f"{R}/cells/{{model}}/{{task}}/{{stage}}/metrics.json",
        predictions=f"{R}/cells/{{model}}/{{task}}/{{stage}}/predictions.jsonl",
    wildcard_constraints:
        task=_alternatives(TASKS),
    params:
        settings=lambda w: as_arg(gen_settings(w.task)),
        reward=as_arg(config["reward"]),
        seed=SEED,
        model_flags=MODEL_FLAGS,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/evaluate/{{model}}/{{task}}/{{stage}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} ehrmind evaluate --model {input.model} --task {wildcards.task}"
        " --test {input.test} --settings {params.settings} --reward {params.reward} --seed {params.seed}"
        " {params.model_flags} --cell model={wildcards.model} stage={wildcards.stage} --out {params.out} 2>&1 | tee {log}"


# One job per trained checkpoint: the model is loaded once and evaluated on every other task.
rule transfer:
    input:
        model=f"{R}/models/{{model}}/{{task}}/{{stage}}",
        tests=lambda w: [f"{R}/data/{t}/test.jsonl" for t in eval_tasks(w.task)],
    output:
        directory(f"{R}/transfer/{{model}}/{{task}}/{{stage}}"),
    wildcard_constraints:
        stage="sft|rlvr|sft_rlvr",
    params:
        evals=lambda w, output: eval_args(eval_tasks(w.task), output[0]),
        reward=as_arg(config["reward"]),
        seed=SEED,
        model_flags=MODEL_FLAGS,
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/transfer/{{model}}/{{task}}/{{stage}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} ehrmind evaluate --model {input.model} {params.evals}"
        " --reward {params.reward} --seed {params.seed} {params.model_flags}"
        " --cell model={wildcards.model} stage={wildcards.stage} train_task={wildcards.task} 2>&1 | tee {log}"
