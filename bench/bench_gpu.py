"""GPU benchmark: LoRA training tokens/s and MFU on a 1B Llama-shaped model built from a config.

    python bench/bench_gpu.py [--examples 200] [--tokenizer models/SmolLM2-135M-Instruct]

Needs a CUDA GPU. The model: Llama 3.2 1B's shape (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192,
tied embeddings) with random weights in bf16 and the tokenizer's vocabulary; the data: the bundled data/bioqa
questions, each with the answers of ten others as its context (PubMedQA's shape: a question, an abstract of about
250 words, a long answer; nothing from ../shared), LoRA r 16 on all linear layers, batch 8, one epoch.
Arms, each in a fresh process: attention sdpa and flash_attention_2 (where flash-attn is installed), each
with padded and padding-free batches, and sdpa with Liger kernels (where liger-kernel is installed). MFU
is 4 x parameters x tokens/s against the bf16 matmul peak measured first (8192^3, best of 5).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

from bench_train import ROOT, CountingCollator, lora_config, training_arguments  # beside this script

from bioqa.io.paths import local_default_model

SHAPE = dict(
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    tie_word_embeddings=True,
    rope_theta=500000.0,
    max_position_embeddings=2048,
)


def long_examples(n: int) -> list:
    """`n` examples of PubMedQA's shape from the bundled QA set: each question with the answers of the ten records
    after it as its context (about 250 words), and its own answer."""
    from bioqa.data.sources import read_records
    from bioqa.data.splits import FieldMap, to_examples

    records = read_records(ROOT / "data" / "bioqa" / "train.jsonl")
    rows = [
        {**r, "context": " ".join(records[(i + k) % len(records)]["answer"] for k in range(1, 11))}
        for i, r in enumerate(records)
    ]
    rows = [{**rows[i % len(rows)], "id": f"long-{i}"} for i in range(n)]
    return to_examples(rows, FieldMap(question="question", answer="answer", context="context"), "train", "bioqa")[0]


def arms() -> list[str]:
    found = ["sdpa", "sdpa-padfree"]
    if importlib.util.find_spec("flash_attn"):
        found += ["flash_attention_2", "flash_attention_2-padfree"]
    if importlib.util.find_spec("liger_kernel"):
        found.append("sdpa-liger")
    return found


def matmul_peak(size: int = 8192, repeats: int = 5) -> float:
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    a @ b
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def run_arm(arm: str, examples: int, tokenizer_path: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainingArguments

    from bioqa.data.prompts import encode_dataset, prompt_format
    from bioqa.settings import PromptArguments
    from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss, needs_attention_mask
    from bioqa.train.trainer import BioQATrainer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    features, _ = encode_dataset(tokenizer, prompt_format(tokenizer, PromptArguments()), long_examples(examples), 1024)
    config = LlamaConfig(vocab_size=len(tokenizer), attn_implementation=arm.split("-")[0], **SHAPE)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, lora_config())
    liger = "liger" in arm  # Liger's fused cross-entropy runs in the model's forward: the model computes the loss
    collator = CountingCollator(
        AnswerOnlyCollator(
            tokenizer,
            pad_to_multiple_of=8,
            padding_free="padfree" in arm,
            keep_attention_mask=needs_attention_mask(model),
            shift_labels=liger,
        )
    )
    args = training_arguments(
        TrainingArguments,
        "/tmp/bench-gpu",
        use_cpu=False,
        bf16=True,
        train_sampling_strategy="group_by_length",
        use_liger_kernel=liger,
    )
    trainer = BioQATrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(features),
        data_collator=collator,
        compute_loss_func=None if liger else answer_only_loss,
    )
    runtime = trainer.train().metrics["train_runtime"]
    memory = torch.cuda.max_memory_allocated() / 2**30
    return {"arm": arm, "runtime_s": runtime, "parameters": parameters, "peak_memory_gib": memory, **collator.counts()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="training examples (one epoch, batch 8)")
    parser.add_argument("--tokenizer", default=str(local_default_model()), help="a local tokenizer folder")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # one measurement, in-process
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.examples, args.tokenizer)))
        return 0
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU; on a CPU run bench/bench_train.py")
    peak = matmul_peak()
    print(f"{torch.cuda.get_device_name()}: bf16 matmul peak {peak / 1e3:.0f} TFLOP/s (8192^3)\n")
    print("| arm | runtime s | tokens/s | padding | MFU | peak memory GiB |\n|---|---|---|---|---|---|")
    for arm in arms():
        done = subprocess.run(
            [sys.executable, __file__, "--arm", arm, "--examples", str(args.examples), "--tokenizer", args.tokenizer],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"| {arm} | failed: {done.stderr.strip().splitlines()[-1][:200]} | | | | |", flush=True)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rate = r["real_tokens"] / r["runtime_s"]
        mfu = 4 * r["parameters"] * rate / (peak * 1e9)
        padding = 1 - r["real_tokens"] / r["padded_positions"]
        print(
            f"| {arm} | {r['runtime_s']:.1f} | {rate:.0f} | {padding:.1%} | {mfu:.1%} | {r['peak_memory_gib']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
