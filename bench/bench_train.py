"""Benchmark: LoRA training throughput against TRL's SFTTrainer, and batched generation.

    python bench/bench_train.py [--examples 40] [--questions 32]      (make bench-train)

Training: SmolLM2-135M-Instruct (models/, from `make model`), PubMedQA examples (question +
abstract -> long answer, from ../shared/data), LoRA r 16 on all linear layers, batch 8, max length
1024, one epoch over the same examples, each arm in a fresh process. Arms: this toolkit's Trainer
set-up in fp32 and bf16 autocast, each with and without length-grouped batches, and TRL's
SFTTrainer with its defaults (prompt-completion data; TRL is installed into bench/.trl only).
Tokens/s counts real (non-padding) tokens over the training runtime; the padding fraction is the
share of padded positions in the batches the collator built.

Generation: 32 MedQuAD questions, 48 new tokens, greedy: one prompt at a time against batched,
length-sorted, left-padded generation; the answers must be identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bioqa.paths import local_default_model

ROOT = Path(__file__).resolve().parent.parent
MODEL = local_default_model()
SHARED = ROOT.parent / "shared" / "data"
TRL_DIR = ROOT / "bench" / ".trl"
TRL_VERSION = "trl==1.16.0"
ARMS = ("ours-fp32-random", "ours-fp32-grouped", "ours-bf16-random", "ours-bf16-grouped", "trl-defaults")


def pubmedqa_examples(n: int) -> list[dict]:
    from bioqa.data import FieldMap, read_records, to_examples

    records = read_records(SHARED / "pubmedqa" / "ori_pqal_train.json")
    fields = FieldMap(question="QUESTION", answer="LONG_ANSWER", context="CONTEXTS")
    return to_examples(records, fields, "train", "pubmedqa")[0][:n]


class CountingCollator:
    """Wraps a data collator; counts real and padded token positions of the batches it builds."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def run_ours(arm: str, examples: list[dict]) -> dict:
    from types import SimpleNamespace

    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    from bioqa.cli.arguments import PromptArguments
    from bioqa.loss import AnswerOnlyCollator, answer_only_loss
    from bioqa.modeling import load_tokenizer
    from bioqa.prompts import encode_dataset, prompt_format
    from bioqa.trainer import BioQATrainer

    tokenizer = load_tokenizer(
        SimpleNamespace(model_name_or_path=str(MODEL), tokenizer_name=None, trust_remote_code=False)
    )
    features, _ = encode_dataset(tokenizer, prompt_format(tokenizer, PromptArguments()), examples, 1024)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), lora_config())
    bf16 = "bf16" in arm
    args = TrainingArguments(
        output_dir="/tmp/bench-ours",
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=2e-4,
        bf16=bf16,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        train_sampling_strategy="group_by_length" if "grouped" in arm else "random",
    )
    # what load_models.build_trainer sets up: its Trainer (length-grouped batches), answer-only logits and
    # loss, padding to multiples of 8 in bf16
    collator = CountingCollator(AnswerOnlyCollator(tokenizer, pad_to_multiple_of=8 if bf16 else None))
    trainer = BioQATrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(features),
        data_collator=collator,
        compute_loss_func=answer_only_loss,
    )
    runtime = trainer.train().metrics["train_runtime"]
    return {"arm": arm, "runtime_s": runtime, "real_tokens": collator.real, "padded_positions": collator.padded}


def run_trl(examples: list[dict]) -> dict:
    sys.path.insert(0, str(TRL_DIR))
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bioqa.cli.arguments import PromptArguments
    from bioqa.prompts import prompt_format, user_text

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    fmt = prompt_format(tokenizer, PromptArguments())
    rows = [
        {
            "prompt": [
                {"role": "system", "content": fmt.system_prompt},
                {"role": "user", "content": user_text(fmt, e["question"], e["context"])},
            ],
            "completion": [{"role": "assistant", "content": e["answer"]}],
        }
        for e in examples
    ]
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    # TRL's defaults, except what must match the other arms (batch, length, lr, epochs) or run on a CPU.
    config = SFTConfig(
        output_dir="/tmp/bench-trl",
        per_device_train_batch_size=8,
        max_length=1024,
        learning_rate=2e-4,
        num_train_epochs=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(),
    )
    trainer.data_collator = collator = CountingCollator(trainer.data_collator)
    runtime = trainer.train().metrics["train_runtime"]
    return {
        "arm": "trl-defaults",
        "runtime_s": runtime,
        "real_tokens": collator.real,
        "padded_positions": collator.padded,
        "bf16": config.bf16,
        "gradient_checkpointing": config.activation_checkpointing,
    }


def run_generation(questions: int, new_tokens: int) -> dict:
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForCausalLM

    from bioqa.cli.arguments import PromptArguments
    from bioqa.data import FieldMap, read_records, to_examples
    from bioqa.generation import GenerationSettings, generate_token_ids
    from bioqa.modeling import load_tokenizer
    from bioqa.prompts import prompt_format, prompt_ids

    tokenizer = load_tokenizer(
        SimpleNamespace(model_name_or_path=str(MODEL), tokenizer_name=None, trust_remote_code=False)
    )
    fmt = prompt_format(tokenizer, PromptArguments())
    rows = to_examples(read_records(SHARED / "medquad" / "medquad_small.jsonl"), FieldMap(), "test", "medquad")[0]
    prompts = [prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in rows[:questions]]
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    timings, outputs = {}, {}
    for batch in (1, 8, 16, 32):
        start = time.perf_counter()
        outputs[batch] = generate_token_ids(
            model, tokenizer, prompts, GenerationSettings(max_new_tokens=new_tokens, batch_size=batch)
        )
        timings[batch] = time.perf_counter() - start
    return {
        "seconds": timings,
        "identical": {b: outputs[b] == outputs[1] for b in outputs},
        "prompt_tokens": [len(p) for p in prompts],
    }


def install_trl() -> None:
    if not (TRL_DIR / "trl").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(TRL_DIR), TRL_VERSION],
            check=True,
        )


def fresh_process(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench arm {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(runs: list[dict], generation: dict, args: argparse.Namespace) -> None:
    print(f"Training: {args.examples} PubMedQA examples, batch 8, one epoch, LoRA r16 all-linear, SmolLM2-135M\n")
    print("| arm | runtime s | real tokens | tokens/s | padding |\n|---|---|---|---|---|")
    trl = next(r for r in runs if r["arm"] == "trl-defaults")
    trl_rate = trl["real_tokens"] / trl["runtime_s"]
    for r in runs:
        rate = r["real_tokens"] / r["runtime_s"]
        padding = 1 - r["real_tokens"] / r["padded_positions"]
        print(
            f"| {r['arm']} | {r['runtime_s']:.1f} | {r['real_tokens']} | {rate:.0f} ({rate / trl_rate:.2f}x TRL) "
            f"| {padding:.1%} |"
        )
    print(f"\nTRL defaults used: bf16={trl['bf16']}, activation checkpointing={trl['gradient_checkpointing']}")
    seconds = generation["seconds"]
    print(f"\nGeneration: {args.questions} MedQuAD questions, {args.new_tokens} new tokens, greedy\n")
    print("| batch size | seconds | speed-up vs one at a time | identical answers |\n|---|---|---|---|")
    for batch, value in seconds.items():
        print(f"| {batch} | {value:.1f} | {seconds['1'] / value:.1f}x | {generation['identical'][batch]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=40, help="training examples (one epoch, batch 8)")
    parser.add_argument("--questions", type=int, default=32, help="prompts for the generation benchmark")
    parser.add_argument("--new_tokens", type=int, default=48, help="tokens generated per prompt")
    parser.add_argument("--arm", choices=ARMS + ("generation",), help=argparse.SUPPRESS)  # one measurement, in-process
    args = parser.parse_args(argv)
    if args.arm == "generation":
        print(json.dumps(run_generation(args.questions, args.new_tokens)))
    elif args.arm:
        examples = pubmedqa_examples(args.examples)
        print(json.dumps(run_trl(examples) if args.arm == "trl-defaults" else run_ours(args.arm, examples)))
    else:
        if not (MODEL / "config.json").is_file():
            raise SystemExit(f"{MODEL} is missing; run `make model` first")
        install_trl()
        runs = [fresh_process("--arm", arm, "--examples", str(args.examples)) for arm in ARMS]
        generation = fresh_process(
            "--arm", "generation", "--questions", str(args.questions), "--new_tokens", str(args.new_tokens)
        )
        report(runs, generation, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
