"""--do_predict: answers to the test split from the adapter just trained, an existing adapter, a
merged checkpoint or the base alone; predictions.jsonl and predict_metrics.json with 95% bootstrap
intervals."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bioqa.data.prompts import PromptFormat, label_continuations
from bioqa.data.splits import Example, Splits
from bioqa.devices import DeviceChoice
from bioqa.errors import InputError, interrupt_on_signal, option
from bioqa.evaluate.metrics import TextScores
from bioqa.evaluate.predictions import generation_prompts, score_rows
from bioqa.generate.attention import use_cpu_attention
from bioqa.generate.generation import Answering, GenerationSettings, answer_prompts
from bioqa.io.files import write_json_atomic, write_jsonl_atomic
from bioqa.io.inventory import record
from bioqa.io.outputs import TRAINING_OUTPUT
from bioqa.io.provenance import utc_now
from bioqa.merging.adapters import other_base_warning
from bioqa.recipe import Recipe
from bioqa.run_files import start_writing, write_model_card
from bioqa.settings import GenerationArguments
from bioqa.train.modeling import load_adapter, load_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")


def answering(
    opts: Recipe,
    choice: DeviceChoice,
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    labels: tuple[str, ...] | None,
) -> Answering:
    """How evaluations and --do_predict answer: generate, and/or choose a label by log-likelihood."""
    scoring = opts.generation.label_scoring if labels else "generate"
    continuations = label_continuations(tokenizer, fmt, labels, opts.data.target) if scoring != "generate" else None
    settings = generation_settings(opts.generation, choice)
    return Answering(settings, scoring != "loglik", continuations)


def generation_settings(gen: GenerationArguments, choice: DeviceChoice) -> GenerationSettings:
    """The generation options, with the device's dtype (for a 4-bit base, its layers' compute dtype: the
    parameters k-bit preparation left in float32, embeddings, norms and head, are cast to it while generating)."""
    return GenerationSettings(
        dtype=choice.generation_dtype,
        cache=gen.generation_cache,
        fold_lora=gen.generation_fold_lora,
        max_new_tokens=gen.generation_max_new_tokens,
        batch_size=gen.generation_batch_size,
        num_beams=gen.generation_num_beams,
        repetition_penalty=gen.generation_repetition_penalty,
        no_repeat_ngram_size=gen.generation_no_repeat_ngram_size,
        min_new_tokens=gen.generation_min_new_tokens,
    ).for_device(choice.device)  # auto settings made the device's now: they are recorded as they run


def prediction_model(opts: Recipe, choice: DeviceChoice) -> tuple[Any, dict]:
    """The model to predict with (base, base + --adapter_name_or_path, or a merged checkpoint) and its identity,
    loaded in the generation dtype."""
    model = load_model(opts.model, replace(choice, weights_dtype=choice.generation_dtype))
    use_cpu_attention(model, choice.device)
    identity = {"model_name_or_path": opts.model.model_name_or_path, "adapter": opts.model.adapter_name_or_path}
    if opts.model.adapter_name_or_path:
        model = load_adapter(model, opts.model.adapter_name_or_path)
        trained_on = getattr(model.peft_config.get("default"), "base_model_name_or_path", None)
        warning = other_base_warning(opts.model.adapter_name_or_path, trained_on, opts.model.model_name_or_path)
        if warning:
            log.warning("%s", warning)
            identity["adapter_trained_on_another_base"] = trained_on
    if not opts.model.load_in_4bit:  # bitsandbytes places a 4-bit model itself
        model = model.to(choice.device)
    return model, identity


class TestPrompts(NamedTuple):
    examples: list[Example]  # the test examples that fit --max_seq_length
    prompts: list[list[int]]  # their prompt ids
    how: Answering  # generate, and/or choose labels by log-likelihood
    labels: tuple[str, ...] | None  # the label set, with --label_field


def test_prompts(
    opts: Recipe, choice: DeviceChoice, tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, splits: Splits
) -> TestPrompts:
    """The prompts --do_predict will answer, built before any weights load: none fitting is a usage error."""
    test, gen = splits.examples["test"], opts.generation
    examples, prompts = generation_prompts(
        tokenizer, fmt, test, opts.data.max_seq_length, gen.generation_max_new_tokens
    )
    if not examples:
        raise InputError(
            f"{option('do_predict')}: none of the {len(test)} test examples fits {option('max_seq_length')} "
            f"{opts.data.max_seq_length} even without its context (the prompt also leaves room for "
            f"{option('generation_max_new_tokens')} {gen.generation_max_new_tokens}); raise {option('max_seq_length')}"
        )
    if len(examples) < len(test):
        log.warning(
            f"predict: %d test examples do not fit {option('max_seq_length')} even without context; left out",
            len(test) - len(examples),
        )
    return TestPrompts(examples, prompts, answering(opts, choice, tokenizer, fmt, splits.labels), splits.labels)


def predict(
    opts: Recipe, model: Any, tokenizer: PreTrainedTokenizerBase, test: TestPrompts, identity: dict, sources: dict
) -> dict | None:
    """Answer the test split; write predictions.jsonl and predict_metrics.json, and return what
    predict_metrics.json holds (main process; None in the others)."""
    answers = answer_prompts(model, tokenizer, test.prompts, test.how, progress=True)
    if answers is None:  # another process of a multi-process run: the main one writes the files
        return None
    scored = score_rows(test.examples, answers, opts.evaluation.eval_metrics, test.labels)
    summary = {
        "split": "test",
        "model": identity,
        **scored.summary(opts.evaluation.bootstrap_samples, opts.training.seed),
        **(text_details(scored.text) if scored.text is not None else {}),
        "generation": {**asdict(test.how.settings), "generated": test.how.generate},
        "label_scoring": opts.generation.label_scoring if test.labels else None,
        "bootstrap": {
            "samples": opts.evaluation.bootstrap_samples,
            "seed": opts.training.seed,
            "interval": "percentile 95%",
        },
        "data_sources": sources,
        "written_at": utc_now(),
    }
    out = Path(opts.training.output_dir)
    write_jsonl_atomic(out / "predictions.jsonl", scored.rows)
    write_json_atomic(out / "predict_metrics.json", summary)
    record(out, TRAINING_OUTPUT, "predictions.jsonl", "predict_metrics.json")
    table = ", ".join(
        f"{name} {s['score']:.4g}" + (f" [{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]" if s["ci95"] else "")
        for name, s in summary["scores"].items()
    )
    log.info("predict: %d examples: %s; wrote %s", len(scored.rows), table, out / "predictions.jsonl")
    return summary


def text_details(scores: TextScores) -> dict[str, Any]:
    """Answer lengths and the BLEU signature, beside the text metrics."""
    corpus = scores.corpus()
    lengths = ("pred_words_mean", "pred_words_max", "ref_words_mean", "empty_predictions")
    return {"lengths_in_words": {k: corpus[k] for k in lengths}, "bleu_signature": corpus.get("bleu_signature")}


def predict_stage(
    opts: Recipe,
    choice: DeviceChoice,
    trained: Any,
    tokenizer: PreTrainedTokenizerBase,
    test: TestPrompts,
    manifest: dict,
    resume: Path | None,
) -> None:
    """--do_predict with the adapter just trained, or with the model (and adapter) named on the command line."""
    if trained is not None:
        model, identity = (
            trained,
            {
                "model_name_or_path": opts.model.model_name_or_path,
                "adapter": opts.training.output_dir,
                "trained_in_this_run": True,
            },
        )
    else:
        model, identity = prediction_model(opts, choice)
        manifest["prediction_model"] = identity  # with the base an adapter was trained on, when it is another
        start_writing(opts, resume)
    with interrupt_on_signal("prediction", resumable=False):
        summary = predict(opts, model, tokenizer, test, identity, manifest["data_sources"])
        if trained is not None and summary is not None:  # the card of the adapter just trained gains its test scores
            write_model_card(Path(opts.training.output_dir), opts, manifest, test=summary)
    if trained is None and not resume and opts.training.process_index == 0:  # a finished run keeps its own manifest
        out = Path(opts.training.output_dir)
        write_json_atomic(out / "run_manifest.json", {**manifest, "finished_at": utc_now()})
        record(out, TRAINING_OUTPUT, "run_manifest.json")
