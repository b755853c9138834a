"""Fine-tune a causal language model with LoRA on biomedical question answering, and predict.

At every evaluation the model also *generates* answers for a fixed subset of the validation split,
scored with ROUGE / BLEU / METEOR (logged as eval_rougeL, eval_bleu, eval_meteor, ...). The output
directory receives the adapter, the tokenizer, a model card (README.md), run_config.yaml, metrics.json,
run_manifest.json, predictions/eval-step-N.jsonl (eval-final.jsonl after training) and the checkpoints. --do_predict
generates answers for the test split (with the adapter just trained, an existing
--adapter_name_or_path, a merged checkpoint or the base alone) and writes predictions.jsonl and
predict_metrics.json (with 95% bootstrap intervals).

    bioqa-train --train_file data/train.jsonl --output_dir outputs/run1    # = python load_models.py ...
    python load_models.py --train_file data/train.jsonl --output_dir outputs/run1
    python load_models.py --config configs/smollm2-135m-cpu.yaml --max_steps 50
    python load_models.py --do_predict --test_file data/test.jsonl --output_dir outputs/zero-shot
    python load_models.py --do_predict --test_file data/test.jsonl --adapter_name_or_path outputs/run1 \\
        --output_dir outputs/ft
    python load_models.py --config configs/mcq-smollm2.yaml --do_train --do_predict --seeds 1 2 3 \\
        --output_dir outputs/mcq
    torchrun --nproc_per_node 2 load_models.py --config run.yaml     # or: accelerate launch ...

Every transformers TrainingArguments flag works unchanged; --help lists all options.
"""

from __future__ import annotations

import logging
import sys

import transformers

from bioqa.cli.runner import run_main
from bioqa.finetuning import execute
from bioqa.io.provenance import command_line
from bioqa.recipe import TrainingArguments
from bioqa.recipe import parse_recipe as parse
from bioqa.run_files import is_main_launch_process
from bioqa.seeds import train_seeds


def configure_logging(training: TrainingArguments) -> None:
    """INFO from the main process, warnings from the others."""
    from transformers.training_args import trainer_log_levels

    main = is_main_launch_process()
    logging.basicConfig(
        format="[bioqa] %(levelname)s %(message)s", level=logging.INFO if main else logging.WARNING, stream=sys.stderr
    )
    level = trainer_log_levels[training.log_level if main else training.log_level_replica]
    if level != -1:  # "passive": leave transformers' own verbosity alone
        transformers.utils.logging.set_verbosity(level)


def run(argv: list[str] | None) -> int:
    recipe = parse(argv)
    configure_logging(recipe.training)
    if recipe.training.seeds:
        train_seeds(recipe, command_line(argv))
    else:
        execute(recipe, command_line(argv))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
