# Pass@k diagnostic of the base model on each task's training split, and the gate.
# The gate is a checkpoint: in gated mode the GRPO jobs to run depend on its decision.


rule passk:
    input:
        model=f"{R}/models/{{model}}/base.json",
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        samples=f"{R}/passk/{{model}}/{{task}}/samples.jsonl",
        meta=f"{R}/passk/{{model}}/{{task}}/sampling.json",
    wildcard_constraints:
        task=_alternatives(TASKS),
    params:
        settings=lambda w: as_arg(passk_settings(w.task)),
        reward=as_arg(config["reward"]),
        seed=DATA_SEED,
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.samples),
    threads: job_threads()
    priority: 3 if GATED else 0   # gated: training waits for the gate; audit: SFT (the critical path) first
    resources:
        **job_resources(),
    log:
        f"{R}/logs/passk/{{model}}/{{task}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind passk --model {input.model} --train {input.train}"
        " --settings {params.settings} --reward {params.reward} --seed {params.seed} {params.model_flags}"
        " --out {params.out} 2>&1 | tee {log}"


# `multi` is gated on the union of its tasks' samples: no new sampling.
checkpoint gate:
    input:
        lambda w: [f"{R}/passk/{w.model}/{t}/samples.jsonl" for t in (TASKS if w.task == MULTI else [w.task])],
    output:
        f"{R}/passk/{{model}}/{{task}}/gate.json",
    params:
        settings=as_arg(gate_settings()),
    log:
        f"{R}/logs/gate/{{model}}/{{task}}.log",
    shell:
        "ehrmind gate {input} --train-task {wildcards.task} --model-name {wildcards.model} --settings {params.settings} --out {output} 2>&1 | tee {log}"


# This suite's device (passk.primer_steps > 0): the same diagnostic and gate on the primer
# checkpoint of the first seed, where the base model writes the format on no item.
rule passk_primer:
    input:
        model=f"{R}/models/{{model}}/{{task}}/primer/seed{{seed}}",
        train=f"{R}/data/{{task}}/train.jsonl",
    output:
        samples=f"{R}/passk/{{model}}/{{task}}/primer/seed{{seed}}/samples.jsonl",
        meta=f"{R}/passk/{{model}}/{{task}}/primer/seed{{seed}}/sampling.json",
    wildcard_constraints:
        task=_alternatives(TASKS),
    params:
        settings=lambda w: as_arg(passk_settings(w.task)),
        reward=as_arg(config["reward"]),
        seed=DATA_SEED,
        model_flags=MODEL_FLAGS,
        env=JOB_ENV,
        out=lambda w, output: os.path.dirname(output.samples),
    threads: job_threads()
    resources:
        **job_resources(),
    log:
        f"{R}/logs/passk/{{model}}/{{task}}/primer/seed{{seed}}.log",
    shell:
        "EHRMIND_GPUS={resources.gpu} OMP_NUM_THREADS={threads} {params.env} ehrmind passk --model {input.model} --train {input.train}"
        " --settings {params.settings} --reward {params.reward} --seed {params.seed} {params.model_flags}"
        " --out {params.out} 2>&1 | tee {log}"


rule gate_primer:
    input:
        f"{R}/passk/{{model}}/{{task}}/primer/seed{{seed}}/samples.jsonl",
    output:
        f"{R}/passk/{{model}}/{{task}}/primer/seed{{seed}}/gate.json",
    wildcard_constraints:
        task=_alternatives(TASKS),
    params:
        settings=as_arg(gate_settings()),
    log:
        f"{R}/logs/gate/{{model}}/{{task}}/primer/seed{{seed}}.log",
    shell:
        "ehrmind gate {input} --train-task {wildcards.task} --model-name {wildcards.model} --start primer"
        " --settings {params.settings} --out {output} 2>&1 | tee {log}"
