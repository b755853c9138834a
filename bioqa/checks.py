"""Every check of a recipe's values that needs no weights, reported together before anything loads: counts and
sizes with each other, label options against --label_field, the metric the best checkpoint is chosen by, and
what the chosen device can run."""

from __future__ import annotations

import importlib.util

from bioqa.data.labels import LABEL_METRICS
from bioqa.errors import option, option_off
from bioqa.evaluate.metrics import metric_names, score_names, unknown_metrics
from bioqa.recipe import Recipe, TrainingArguments
from bioqa.train.peft_methods import peft_problems


def wants_training(training: TrainingArguments) -> bool:
    """--do_train, or no mode at all (the common case); --do_predict alone predicts only."""
    return training.do_train or not training.do_predict


def argument_problems(opts: Recipe) -> list[str]:
    """Every invalid value, found together before anything loads: counts and sizes are checked with each other."""
    problems = []
    if opts.model.adapter_name_or_path and wants_training(opts.training):
        problems.append(
            f"{option('adapter_name_or_path')} is for {option('do_predict')} alone; training starts a new adapter"
        )
    problems += count_problems(opts) + label_problems(opts) + best_metric_problems(opts) + seeds_problems(opts)
    problems += peft_problems(opts.adapter) if wants_training(opts.training) else []
    unknown = unknown_metrics(opts.evaluation.eval_metrics, option("eval_metrics"))
    problems += [unknown] if unknown else []
    if opts.evaluation.early_stopping_patience is not None and not (
        opts.training.load_best_model_at_end and opts.training.metric_for_best_model
    ):
        problems.append(
            f"{option('early_stopping_patience')} needs {option('load_best_model_at_end')} and "
            f"{option('metric_for_best_model')} (e.g. eval_rougeL)"
        )
    return problems


def seeds_problems(opts: Recipe) -> list[str]:
    """A seeds study (one run per seed) that could not be one: a seed twice, nothing to train, or one upload for
    several runs."""
    training, problems = opts.training, []
    if not training.seeds:
        return []
    repeated = sorted({seed for seed in training.seeds if training.seeds.count(seed) > 1})
    if repeated:
        problems.append(
            f"{option('seeds')} gives {', '.join(map(str, repeated))} more than once; give each seed once (the same "
            "seed trains the same run again)"
        )
    if not wants_training(training):
        problems.append(
            f"{option('seeds')} trains the recipe once per seed; add {option('do_train')} (a prediction alone does "
            "not depend on the seed)"
        )
    if training.push_to_hub:
        problems.append(
            f"{option('push_to_hub')} uploads one run, and {option('seeds')} trains several; drop it and upload the "
            "seed you choose from its folder"
        )
    resume = training.resume_from_checkpoint
    if resume not in (None, "", "false", "False", "latest", "true", "True"):
        problems.append(
            f"{option('resume_from_checkpoint')} {resume}: a seeds study resumes with latest (each seed from its "
            "own newest checkpoint)"
        )
    return problems


def device_problems(opts: Recipe, device: str) -> list[str]:
    """Options the chosen device cannot run, found before any weights load."""
    problems = []
    if opts.training.use_liger_kernel:
        if device != "cuda":
            problems.append(
                f"{option('use_liger_kernel')} runs Triton kernels, which need a CUDA GPU, but the device is "
                f"{device}; drop it"
            )
        elif importlib.util.find_spec("liger_kernel") is None:
            problems.append(
                f"{option('use_liger_kernel')} needs liger-kernel; pip install -e '.[gpu]' (liger-kernel 0.8.5)"
            )
    return problems


def label_problems(opts: Recipe) -> list[str]:
    """Label options that need --label_field (checked against the data once it loads)."""
    data, best = opts.data, (opts.training.metric_for_best_model or "").removeprefix("eval_")
    if data.label_field:
        return []
    needs = [
        (data.target != "answer", f"{option('target')} {data.target}"),
        (data.labels is not None, option("labels")),
        (bool(data.options_field), option("options_field")),
        (opts.generation.label_scoring != "generate", f"{option('label_scoring')} {opts.generation.label_scoring}"),
        (best in LABEL_METRICS, f"{option('metric_for_best_model')} {opts.training.metric_for_best_model}"),
    ]
    return [
        f"{flag} needs {option('label_field')} (the field holding each question's label, e.g. final_decision)"
        for wanted, flag in needs
        if wanted
    ]


def logged_metrics(opts: Recipe) -> set[str]:
    """The answer metrics each evaluation logs (without the eval_ prefix), given the metrics and label scoring."""
    scoring = opts.generation.label_scoring if opts.data.label_field else "generate"
    generated = scoring != "loglik" and opts.evaluation.generation_eval
    logged = (
        {name for metric in opts.evaluation.eval_metrics if metric in metric_names() for name in score_names([metric])}
        if generated
        else set()
    )
    if opts.data.label_field and generated:
        logged |= {"accuracy", "macro_f1", "unparsed"}
    if opts.data.label_field and scoring != "generate" and opts.evaluation.generation_eval:
        logged |= {"loglik_accuracy", "loglik_macro_f1"}
    return logged


def best_metric_problems(opts: Recipe) -> list[str]:
    """--metric_for_best_model naming an answer metric this run will not log (the Trainer would fail at the first
    checkpoint). Label metrics without --label_field are reported by label_problems."""
    name = opts.training.metric_for_best_model or ""
    bare, logged = name.removeprefix("eval_"), logged_metrics(opts)
    known = bare in score_names() or (bare in LABEL_METRICS and opts.data.label_field)
    if not known or bare in logged:
        return []
    shown = ", ".join(f"eval_{metric}" for metric in sorted(logged)) or "no answer metrics"
    return [
        f"{option('metric_for_best_model')} {name} is not logged by this run (it logs {shown}); "
        "choose one of those, or "
        f"change {option('eval_metrics')} / {option('label_scoring')} / {option_off('generation_eval')}"
    ]


def count_problems(opts: Recipe) -> list[str]:
    """Counts and sizes: a zero that would divide, a negative that would silently drop examples."""
    t, gen, data = opts.training, opts.generation, opts.data
    training = wants_training(t)
    positive = [
        (option("num_train_epochs"), t.num_train_epochs if training and t.max_steps <= 0 else 1),
        (option("lora_r"), opts.adapter.lora_r),
        (option("lora_alpha"), opts.adapter.lora_alpha),
        (option("learning_rate"), t.learning_rate),
        (option("per_device_train_batch_size"), t.per_device_train_batch_size),
        (option("per_device_eval_batch_size"), t.per_device_eval_batch_size),
        (option("gradient_accumulation_steps"), t.gradient_accumulation_steps),
        (option("max_seq_length"), data.max_seq_length),
        (option("generation_max_new_tokens"), gen.generation_max_new_tokens),
        (option("generation_batch_size"), gen.generation_batch_size),
        (option("generation_num_beams"), gen.generation_num_beams),
        (option("generation_repetition_penalty"), gen.generation_repetition_penalty),
        (option("bootstrap_samples"), opts.evaluation.bootstrap_samples),
        (option("early_stopping_patience"), opts.evaluation.early_stopping_patience or 1),
    ]
    not_negative = [
        (option("max_train_samples"), data.max_train_samples),
        (option("max_eval_samples"), data.max_eval_samples),
        (option("max_predict_samples"), data.max_predict_samples),
        (option("warmup_steps"), t.warmup_steps),
        (option("generation_eval_samples"), opts.evaluation.generation_eval_samples),
        (option("generation_min_new_tokens"), gen.generation_min_new_tokens),
        (option("generation_no_repeat_ngram_size"), gen.generation_no_repeat_ngram_size),
    ]
    problems = [f"{flag} must be positive, got {value}" for flag, value in positive if value <= 0]
    problems += [
        f"{flag} must be 0 or more, got {value}" for flag, value in not_negative if value is not None and value < 0
    ]
    if t.max_steps == 0 or t.max_steps < -1:
        problems.append(
            f"{option('max_steps')} must be positive (or -1: train {option('num_train_epochs')}), got {t.max_steps}"
        )
    if not 0 <= opts.adapter.lora_dropout < 1:
        problems.append(f"{option('lora_dropout')} must be at least 0 and below 1, got {opts.adapter.lora_dropout}")
    if gen.generation_min_new_tokens > gen.generation_max_new_tokens:
        problems.append(
            f"{option('generation_min_new_tokens')} {gen.generation_min_new_tokens} exceeds "
            f"{option('generation_max_new_tokens')} "
            f"{gen.generation_max_new_tokens}"
        )
    return problems
