rule evaluate:
    input:
        model=lambda w: model_for(w.stage).format(**w),
        test=f"{R}/data/{{task}}/test.jsonl",
    output:
        metrics=f"{R}/cells/{{model}}/{{task}}/{{stage}}/metrics.json",
        predictions=f"{R}/cells/{{model}}/{{task}}/{{stage}}/predictions.jsonl",
    params:
        settings=as_arg(config["generation"]),
        reward=as_arg(config["reward"]),
        seed=SEED,
        model_flags=MODEL_FLAGS,
        out=lambda w, output: os.path.dirname(output.metrics),
    threads: workflow.cores
    resources:
        **job_resources(),
    log:
        f"{R}/logs/evaluate/{{model}}/{{task}}/{{stage}}.log",
    shell:
        "OMP_NUM_THREADS={threads} ehrmind evaluate --task {wildcards.task} --model {input.model}"
        " --test {input.test} --settings {params.settings} --reward {params.reward} --seed {params.seed} {params.model_flags}"
        " --cell model={wildcards.model} task={wildcards.task} stage={wildcards.stage}"
        " --out {params.out} 2>&1 | tee {log}"
