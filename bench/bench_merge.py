"""Benchmark: peak memory and time of the streaming merge against PEFT's merge_and_unload.

    python bench/bench_merge.py [--shard_size 60MB]        (make bench-merge, after make model)

SmolLM2-135M-Instruct (models/, float32) is re-saved in shards of `--shard_size`, and given a LoRA
adapter (r 16, all linear layers) with non-zero weights. Each arm runs in a fresh process and
reports its peak resident memory (ru_maxrss) and wall time:
* peft: what users otherwise run: `PeftModel.from_pretrained(...).merge_and_unload()` + `save_pretrained`;
* ours in memory: merge_base_and_adapt_ft_models.py (with its from-disk logits verification);
* ours streaming: the same with --low_memory (weight-by-weight verification).
The merged tensors of the streaming arm are then compared with the peft arm's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"

PEFT_ARM = """
import resource, sys, time, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
start = time.perf_counter()
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32), sys.argv[2])
model.merge_and_unload().save_pretrained(sys.argv[3], max_shard_size=sys.argv[4])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def prepare(work: Path, shard_size: str) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter = work / "base", work / "adapter"
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    model.save_pretrained(base, max_shard_size=shard_size)
    AutoTokenizer.from_pretrained(MODEL).save_pretrained(base)
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(MODEL).save_pretrained(adapter)
    return base, adapter


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a child process, from /proc-free getrusage of the child."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{result.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("child peak memory not measurable: run each arm in a fresh benchmark process")
    return time.perf_counter() - start, peak / 1024


def merged_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for shard in folder.glob("*.safetensors"):
        tensors.update(load_file(shard))
    return tensors


def run_arm(arm: str, base: Path, adapter: Path, out: Path, shard_size: str) -> None:
    if arm == "peft":
        cmd = [sys.executable, "-c", PEFT_ARM, str(base), str(adapter), str(out), shard_size]
    else:
        cmd = [
            sys.executable,
            "merge_base_and_adapt_ft_models.py",
            "--adapter_dir",
            str(adapter),
            "--base_model",
            str(base),
            "--output_dir",
            str(out),
            "--max_shard_size",
            shard_size,
        ]
        cmd += ["--low_memory"] if arm == "ours streaming" else []
    seconds, peak = timed(cmd)
    print(json.dumps({"arm": arm, "seconds": seconds, "peak_mb": peak}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard_size", default="60MB", help="shard size of the re-saved base")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:  # one arm per benchmark process, so each child's peak memory is its own
        work = Path(args.work)
        run_arm(args.arm, work / "base", work / "adapter", work / args.arm.replace(" ", "-"), args.shard_size)
        return 0
    if not (MODEL / "config.json").is_file():
        raise SystemExit(f"{MODEL} is missing; run `make model` first")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, _ = prepare(work, args.shard_size)
        rows = []
        for arm in ("peft", "ours in memory", "ours streaming"):
            out = subprocess.run(
                [sys.executable, __file__, "--arm", arm, "--work", tmp, "--shard_size", args.shard_size],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        peft, streamed = merged_tensors(work / "peft"), merged_tensors(work / "ours-streaming")
        diff = max(float((peft[k] - streamed[k]).abs().max()) for k in streamed)
        shards = len(list(base.glob("*.safetensors")))
    print(f"SmolLM2-135M-Instruct float32 in {shards} shards of <= {args.shard_size}; LoRA r16 all-linear\n")
    print("| arm | wall s | peak RSS MB |\n|---|---|---|")
    for row in rows:
        print(f"| {row['arm']} | {row['seconds']:.1f} | {row['peak_mb']:.0f} |")
    ratio = rows[2]["peak_mb"] / rows[0]["peak_mb"]
    print(
        f"\nstreaming peak / merge_and_unload peak: {ratio:.2f}; tensors: {len(streamed)} (tied head stored once), "
        f"max |difference| {diff:.2e}; all names of the streamed model in peft's: {set(streamed) <= set(peft)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
