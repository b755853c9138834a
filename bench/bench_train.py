"""Benchmark: LoRA training throughput and MFU against TRL's SFTTrainer, and generation prefill / decode speed.

    python bench/bench_train.py [--examples 40] [--questions 16]      (make bench-train)

Training: SmolLM2-135M-Instruct (models/, from `make model`), PubMedQA examples (question + abstract ->
long answer, from ../shared/data), LoRA r 16 on all linear layers (dropout 0), batch 8, max length 1024,
one epoch over the same examples, each arm in a fresh process. Arms:
* ours-fp32: float32 weights, no autocast;
* ours-bf16-autocast: float32 weights under bf16 autocast (every step casts the weights);
* ours-bf16: the frozen base loaded in bf16 under bf16 autocast, LoRA in float32 (the default where the CPU
  computes bf16 natively);
* ours-bf16-padfree: the same with padding-free batches (one row per batch, a block-diagonal mask);
* trl-defaults: TRL's SFTTrainer with its defaults (prompt-completion data; installed into bench/.trl);
* trl-tuned: TRL as an expert would tune it: no activation checkpointing, length-grouped batches, bf16.
Ours use length-grouped batches. Tokens/s counts real (non-padding) tokens over the training runtime;
padding is the share of padded positions in the collated batches; MFU is 4 x parameters x tokens/s
against the bf16 matmul peak measured here first (2048^3, best of 5; float32 arms against the float32 peak).

Generation: --questions PubMedQA prompts in one batch, greedy; prefill tokens/s = prompt tokens over the
time of a 1-token generate, decode tokens/s = the further tokens over the extra time of a 33-token one;
float32 (before) against the auto settings (bf16 where the CPU computes it natively).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from bioqa.io.paths import local_default_model

ROOT = Path(__file__).resolve().parent.parent
MODEL = local_default_model()
SHARED = ROOT.parent / "shared" / "data"
TRL_DIR = ROOT / "bench" / ".trl"
TRL_VERSION = "trl==1.16.0"
ARMS = ("ours-fp32", "ours-bf16-autocast", "ours-bf16", "ours-bf16-padfree", "trl-defaults", "trl-tuned")
DECODE_TOKENS = 32


def pubmedqa_examples(n: int) -> list[dict]:
    from bioqa.data.sources import read_records
    from bioqa.data.splits import FieldMap, to_examples

    records = read_records(SHARED / "pubmedqa" / "ori_pqal_train.json")
    fields = FieldMap(question="QUESTION", answer="LONG_ANSWER", context="CONTEXTS")
    return to_examples(records, fields, "train", "pubmedqa")[0][:n]


class CountingCollator:
    """Wraps a data collator; counts real and padded token positions of the batches it builds."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        # from the examples: a right-padded batch comes without its attention mask (bioqa.train.loss)
        self.real += sum(len(feature["input_ids"]) for feature in features)
        self.padded += batch["input_ids"].numel()
        return batch

    def counts(self) -> dict:
        return {"real_tokens": self.real, "padded_positions": self.padded}


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of `repeats` size^3 matrix products in this dtype on the CPU."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: threads and kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def parameter_count() -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(MODEL))
    return sum(p.numel() for p in model.parameters())


def run_ours(arm: str, examples: list[dict]) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    from bioqa.data.prompts import encode_dataset, prompt_format
    from bioqa.generate.attention import use_cpu_attention
    from bioqa.settings import PromptArguments
    from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss
    from bioqa.train.modeling import load_tokenizer
    from bioqa.train.trainer import BioQATrainer

    tokenizer = load_tokenizer(
        SimpleNamespace(model_name_or_path=str(MODEL), tokenizer_name=None, trust_remote_code=False)
    )
    features, _ = encode_dataset(tokenizer, prompt_format(tokenizer, PromptArguments()), examples, 1024)
    weights = torch.bfloat16 if arm in ("ours-bf16", "ours-bf16-padfree") else torch.float32
    base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=weights)
    use_cpu_attention(base, "cpu")  # as load_models.py trains on a CPU
    model = get_peft_model(base, lora_config())
    bf16 = "bf16" in arm
    # what load_models.build_trainer sets up: its Trainer (length-grouped batches), answer-only logits and
    # loss, padding to multiples of 8 in bf16
    collator = CountingCollator(
        AnswerOnlyCollator(tokenizer, pad_to_multiple_of=8 if bf16 else None, padding_free="padfree" in arm)
    )
    trainer = BioQATrainer(
        model=model,
        args=training_arguments(
            TrainingArguments, "/tmp/bench-ours", bf16=bf16, train_sampling_strategy="group_by_length"
        ),
        train_dataset=Dataset.from_list(features),
        data_collator=collator,
        compute_loss_func=answer_only_loss,
    )
    runtime = trainer.train().metrics["train_runtime"]
    return {"arm": arm, "runtime_s": runtime, "bf16": bf16, **collator.counts()}


def training_arguments(kind, output_dir: str, **overrides):
    """What every arm shares: batch 8, one epoch, learning rate 2e-4, CPU, no saving."""
    settings = dict(
        output_dir=output_dir,
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=2e-4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    return kind(**{**settings, **overrides})


def run_trl(arm: str, examples: list[dict]) -> dict:
    sys.path.insert(0, str(TRL_DIR))
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bioqa.data.prompts import prompt_format, user_text
    from bioqa.settings import PromptArguments

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
    # TRL's defaults, except what must match the other arms (batch, length, lr, epochs) or run on a CPU; the
    # tuned arm as an expert would set it for a CPU with native bf16
    tuned = {"activation_checkpointing": False, "train_sampling_strategy": "group_by_length", "bf16": True}
    config = training_arguments(SFTConfig, "/tmp/bench-trl", max_length=1024, **(tuned if arm == "trl-tuned" else {}))
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
        "arm": arm,
        "runtime_s": runtime,
        "bf16": config.bf16,
        "activation_checkpointing": config.activation_checkpointing,
        **collator.counts(),
    }


def run_generation(questions: int) -> dict:
    """Prefill and decode tokens/s, before (float32, dynamic cache) and with the auto settings."""
    from bioqa.devices import choose_device
    from bioqa.prediction import generation_settings
    from bioqa.settings import GenerationArguments

    tokenizer, prompts = pubmedqa_prompts(questions)
    choice = choose_device("cpu")
    auto = generation_settings(GenerationArguments(generation_batch_size=questions), choice)
    arms = {
        "fp32, dynamic cache": replace(auto, dtype="float32", cache="dynamic"),
        f"auto: {auto.dtype}, {auto.cache} cache": auto,
    }
    return {
        "prompt_tokens": sum(map(len, prompts)),
        "rows": len(prompts),
        "arms": {name: timed_generation(tokenizer, prompts, settings) for name, settings in arms.items()},
    }


def pubmedqa_prompts(questions: int):
    from bioqa.data.prompts import prompt_format, prompt_ids
    from bioqa.settings import PromptArguments
    from bioqa.train.modeling import load_tokenizer

    tokenizer = load_tokenizer(
        SimpleNamespace(model_name_or_path=str(MODEL), tokenizer_name=None, trust_remote_code=False)
    )
    fmt = prompt_format(tokenizer, PromptArguments())
    return tokenizer, [prompt_ids(tokenizer, fmt, e["question"], e["context"]) for e in pubmedqa_examples(questions)]


def timed_generation(tokenizer, prompts: list[list[int]], settings) -> dict:
    """Seconds of a 1-token and of a (1 + DECODE_TOKENS)-token generate over all prompts in one batch."""
    import torch
    from transformers import AutoModelForCausalLM

    from bioqa.generate.attention import use_cpu_attention
    from bioqa.generate.generation import Answering, answer_prompts

    # frozen, as a prediction's or an evaluation's base is, so the settings' dtype casts its weights (a weight that
    # requires gradients keeps its dtype, and bf16 would then be autocast over float32 weights)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).requires_grad_(False)
    use_cpu_attention(model, "cpu")  # as load_models.py loads a model on a CPU
    seconds = {}
    for new in (1, 1 + DECODE_TOKENS, 1, 1 + DECODE_TOKENS):  # twice each: the first call warms up
        how = Answering(replace(settings, max_new_tokens=new, min_new_tokens=new))
        start = time.perf_counter()
        answer_prompts(model, tokenizer, prompts, how)
        seconds[new] = time.perf_counter() - start
    return seconds


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


def versus(rate: float, best_trl: float | None) -> str:
    return f"{rate / best_trl:.2f}x" if best_trl else "no TRL arm run"


def report(runs: list[dict], generation: dict, peaks: dict, parameters: int, args: argparse.Namespace) -> None:
    print(
        f"Training: {args.examples} PubMedQA examples, batch 8, one epoch, LoRA r16 all-linear, SmolLM2-135M "
        f"({parameters / 1e6:.0f}M parameters); matmul peak here: bf16 {peaks['bfloat16']:.0f}, float32 "
        f"{peaks['float32']:.0f} GFLOP/s\n"
    )
    print("| arm | runtime s | real tokens | tokens/s | vs TRL's best | padding | MFU |\n|---|---|---|---|---|---|---|")
    best_trl = max((r["real_tokens"] / r["runtime_s"] for r in runs if r["arm"].startswith("trl")), default=None)
    for r in runs:
        rate = r["real_tokens"] / r["runtime_s"]
        padding = 1 - r["real_tokens"] / r["padded_positions"]
        mfu = 4 * parameters * rate / (peaks["bfloat16" if r["bf16"] else "float32"] * 1e9)
        print(
            f"| {r['arm']} | {r['runtime_s']:.1f} | {r['real_tokens']} | {rate:.0f} | {versus(rate, best_trl)} "
            f"| {padding:.1%} | {mfu:.1%} |"
        )
    for r in runs:
        if r["arm"].startswith("trl"):
            print(f"{r['arm']}: bf16={r['bf16']}, activation checkpointing={r['activation_checkpointing']}")
    print(f"\nGeneration: {generation['rows']} PubMedQA prompts ({generation['prompt_tokens']} tokens) in one batch\n")
    print("| settings | prefill tokens/s | decode tokens/s |\n|---|---|---|")
    for name, seconds in generation["arms"].items():
        prefill = generation["prompt_tokens"] / seconds["1"]
        decode = generation["rows"] * DECODE_TOKENS / (seconds[str(1 + DECODE_TOKENS)] - seconds["1"])
        print(f"| {name} | {prefill:.0f} | {decode:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=40, help="training examples (one epoch, batch 8)")
    parser.add_argument("--questions", type=int, default=16, help="prompts for the generation benchmark")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="training arms to run")
    parser.add_argument("--arm", choices=ARMS + ("generation",), help=argparse.SUPPRESS)  # one measurement, in-process
    args = parser.parse_args(argv)
    if args.arm == "generation":
        print(json.dumps(run_generation(args.questions)))
    elif args.arm:
        examples = pubmedqa_examples(args.examples)
        print(json.dumps(run_trl(args.arm, examples) if args.arm.startswith("trl") else run_ours(args.arm, examples)))
    else:
        if not (MODEL / "config.json").is_file():
            raise SystemExit(f"{MODEL} is missing; run `make model` first")
        install_trl()
        peaks = {dtype: matmul_peak(dtype) for dtype in ("bfloat16", "float32")}
        runs = [fresh_process("--arm", arm, "--examples", str(args.examples)) for arm in args.arms]
        generation = fresh_process("--arm", "generation", "--questions", str(args.questions))
        report(runs, generation, peaks, parameter_count(), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
