"""Benchmark: decoding changes the toolkit does not ship, probed on the two PubMedQA dev folds.

    python bench/bench_decoding.py --context_guidance 1.5   # context-aware decoding
    python bench/bench_decoding.py --context_boost 1.1      # favour the prompt's own tokens
    python bench/bench_decoding.py --adapter_scale 0.7      # WiSE-FT: part of the way back to the base

Each re-predicts the dev folds of bench/bench_recipes.py (run its --phase dev and --phase dev2
first: their data files and adapters are reused) with the recipe's generation settings plus one
change, zero-shot and fine-tuned, through the toolkit's own prediction path (bioqa.cli.train.main, what
load_models.py runs).
The change is made from outside, with the libraries' own pieces:

* context guidance S: transformers' classifier-free guidance (`guidance_scale`,
  `negative_prompt_ids`) against the same prompt without the abstract; S = 1 + alpha of
  context-aware decoding (Shi et al. 2023), 1.5 their summarisation setting.
* context boost P: transformers' EncoderRepetitionPenaltyLogitsProcessor, which raises the odds of
  every token of the prompt (special tokens left out) by P.
* adapter scale M: peft's `rescale_adapter_scale`, the LoRA update times M (fine-tuned only).

None of them helped (docs/BENCHMARKS.md), so none is an option of load_models.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import bioqa.cli.train as load_models
import bioqa.prediction as prediction
from bench_recipes import WORK  # beside this script, so on sys.path when it runs
from bioqa.config import answer_flags
from bioqa.evaluate.predictions import read_prediction_file

ROOT = Path(__file__).resolve().parent.parent

RECIPE = WORK / "pubmedqa"
FOLDS = {"dev": ("dev", "train"), "dev2": ("dev2", "train2")}  # scored part, training file of its adapter
negative_prompts: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> the same prompt without the context
boosted_tokens: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> its tokens, special ones left out
ORIGINAL = {"generation_prompts": prediction.generation_prompts, "prediction_model": prediction.prediction_model}
RUN_SCOPE = ExitStack()  # what one prediction run changes, undone when it ends


def with_negatives(tokenizer, fmt, examples, *rest):
    """The prediction stage's generation_prompts, also recording each prompt's context-free twin and tokens to boost."""
    from bioqa.data.prompts import prompt_ids

    kept, prompts = ORIGINAL["generation_prompts"](tokenizer, fmt, examples, *rest)
    special = set(tokenizer.all_special_ids)
    for row, ids in zip(kept, prompts):
        negative_prompts[tuple(ids)] = prompt_ids(tokenizer, fmt, row["question"], "")
        boosted_tokens[tuple(ids)] = [token for token in ids if token not in special]
    return kept, prompts


def guided_generate(generate, args: argparse.Namespace):
    """model.generate with the probed change added for each batch of left-padded prompts."""
    import torch
    from transformers import EncoderRepetitionPenaltyLogitsProcessor

    from bioqa.generate.batches import left_padded

    def generate_with_change(input_ids, attention_mask, **kwargs):
        rows = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
        if args.context_guidance is not None:
            negatives, negatives_mask = left_padded(
                [negative_prompts[row] for row in rows], kwargs["pad_token_id"], input_ids.device
            )
            kwargs.update(
                guidance_scale=args.context_guidance,
                negative_prompt_ids=negatives,
                negative_prompt_attention_mask=negatives_mask,
            )
        if args.context_boost is not None:
            # Short rows are padded with their own first token: boosted once, harmless.
            ordinary = [boosted_tokens[row] for row in rows]
            width = max(len(row) for row in ordinary)
            boosted = torch.tensor([row + [row[0]] * (width - len(row)) for row in ordinary], device=input_ids.device)
            kwargs["logits_processor"].insert(0, EncoderRepetitionPenaltyLogitsProcessor(args.context_boost, boosted))
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    return generate_with_change


def changed_model(args: argparse.Namespace, opts, choice):
    """The prediction stage's prediction_model with the adapter rescaled and generate() wrapped."""
    from peft.helpers import rescale_adapter_scale

    model, identity = ORIGINAL["prediction_model"](opts, choice)
    if args.adapter_scale is not None and opts.model.adapter_name_or_path:
        RUN_SCOPE.enter_context(rescale_adapter_scale(model, args.adapter_scale))  # undone when the run ends
    model.generate = guided_generate(model.generate, args)
    return model, identity


def predict(fold: str, system: str, out: Path) -> list[dict]:
    scored, train = FOLDS[fold]
    data = RECIPE / "data"
    argv = [
        "--do_predict",
        "--test_file",
        str(data / f"{scored}.json"),
        "--train_file",
        str(data / f"{train}.json"),
        "--split_ratios",
        "1",
        "0",
        "0",
        *answer_flags(ROOT / "configs" / "pubmedqa-smollm2.yaml"),
        "--output_dir",
        str(out),
        "--overwrite_output_dir",
    ]
    if system == "fine-tuned":
        argv += ["--adapter_name_or_path", str(RECIPE / fold / "fine-tuned")]
    with RUN_SCOPE:
        status = load_models.main(argv)
    if status != 0:
        raise SystemExit(f"prediction failed for {fold} {system}")
    return read_prediction_file(out / "predictions.jsonl")


def summary(rows: list[dict]) -> str:
    words = statistics.mean(len(row["prediction"].split()) for row in rows)
    return (
        f"{words:.1f} words, ROUGE-L {statistics.mean(r['rougeL'] for r in rows):.3f}, "
        f"METEOR {statistics.mean(r['meteor'] for r in rows):.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    change = parser.add_mutually_exclusive_group(required=True)
    change.add_argument("--context_guidance", type=float, help="guidance scale against the prompt without the abstract")
    change.add_argument("--context_boost", type=float, help="odds multiplier for the prompt's tokens")
    change.add_argument("--adapter_scale", type=float, help="multiplier of the LoRA update (fine-tuned only)")
    args = parser.parse_args(argv)
    missing = [fold for fold in FOLDS if not (RECIPE / fold / "fine-tuned" / "adapter_config.json").is_file()]
    if missing:
        parser.error(
            f"no dev adapter for {', '.join(missing)}; run bench/bench_recipes.py --recipe pubmedqa --phase "
            f"{missing[0]} first"
        )
    prediction.generation_prompts, prediction.prediction_model = with_negatives, partial(changed_model, args)
    name = next(f"{key}-{value}" for key, value in vars(args).items() if value is not None)
    systems = ["fine-tuned"] if args.adapter_scale is not None else ["zero-shot", "fine-tuned"]
    rows = {
        (fold, system): predict(fold, system, RECIPE / "decoding" / name / f"{fold}-{system}")
        for fold in FOLDS
        for system in systems
    }
    print(f"\n{name}")
    for (fold, system), scored in rows.items():
        print(f"  {fold} {system}: {summary(scored)}")
    for system in systems:
        print(f"  both folds, {system}: {summary([r for fold in FOLDS for r in rows[fold, system]])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
