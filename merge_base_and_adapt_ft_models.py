"""Merge a LoRA adapter into its base model: a verified checkpoint for plain `from_pretrained`.

The base is read from the adapter's own adapter_config.json (`--base_model` overrides). The merged
model (safetensors, sharded), the tokenizer with its chat template, generation_config.json, the
adapter's run_manifest.json and a merge_report.json are written to a temporary folder beside the
target and renamed into place only after the verification passed.

    python merge_base_and_adapt_ft_models.py --adapter_dir outputs/run1            # -> outputs/run1-merged
    python merge_base_and_adapt_ft_models.py --adapter_dir outputs/run1 --dtype bf16 --low_memory
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from bioqa.adapters import Adapter, adapter_tensors, full_tensors, read_adapter
from bioqa.merging import (DTYPES, base_dtype, base_files, check_shapes, estimated_output_bytes, load_peft_model,
                           merge_in_memory, shard_files, stream_merge, streaming_refusal, tensor_shapes,
                           with_tied_head, write_streamed_config)
from bioqa.modeling import resolve_model_name
from bioqa.runfiles import (RunError, UsageError, build_parser, check_output_folder, file_sha256, parse_arguments,
                            peak_memory_mb, run_main, staged_folder, utc_now, write_json_atomic)
from bioqa.verification import compare_logits, probe_model, weightwise_summary

log = logging.getLogger("bioqa")


@dataclass
class MergeArguments:
    adapter_dir: str = field(metadata={"help": "Folder of the trained adapter (adapter_config.json + weights); the only required flag."})
    base_model: Optional[str] = field(default=None, metadata={"help": "Base model (Hub id or folder); default: the adapter's base_model_name_or_path."})
    output_dir: Optional[str] = field(default=None, metadata={"help": "Where to write the merged model; default: <adapter_dir>-merged."})
    dtype: str = field(default="auto", metadata={"help": "dtype of the merged weights; auto = the base's own.", "choices": ["auto", "bf16", "fp16", "fp32"]})
    max_shard_size: str = field(default="2GB", metadata={"help": "Largest safetensors shard (in-memory merge; streaming keeps the base's shards)."})
    device: str = field(default="cpu", metadata={"help": "Device for the in-memory merge and the verification.", "choices": ["cpu", "cuda", "mps"]})
    low_memory: bool = field(default=False, metadata={"help": "Stream the base shard by shard (automatic when it would not fit in RAM twice)."})
    verify: bool = field(default=True, metadata={"help": "Check the merged model against base + adapter (--no_verify to skip)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the Hub to run."})


def parse(argv: list[str] | None) -> MergeArguments:
    parser = build_parser([MergeArguments], description=__doc__.split("\n\n")[0])
    return parse_arguments(parser, argv)[0]


def output_path(args: MergeArguments, adapter: Adapter) -> Path:
    return Path(args.output_dir) if args.output_dir else adapter.path.parent / f"{adapter.path.name}-merged"


def already_merged(out: Path, adapter_hash: str, base: str, dtype: str) -> bool:
    report = out / "merge_report.json"
    if not report.is_file():
        return False
    previous = json.loads(report.read_text())
    return (previous.get("adapter", {}).get("sha256"), previous.get("base_model"), previous.get("dtype")) == (adapter_hash, base, dtype)


def check_disk_space(out: Path, needed: int) -> None:
    parent = next(p for p in [out, *out.parents] if p.exists())
    free = shutil.disk_usage(parent).free
    if needed * 1.05 > free:
        raise UsageError(f"not enough disk space for the merged model in {parent}: it needs about "
                         f"{needed / 1e9:.2f} GB and {free / 1e9:.2f} GB are free; free space or choose another --output_dir")


def needs_streaming(args: MergeArguments, shards: list[Path], source_dtype: str) -> bool:
    """--low_memory, or a float32 copy of the base would not fit in the available RAM twice."""
    import psutil

    if args.low_memory:
        return True
    in_memory_bytes = estimated_output_bytes(shards, source_dtype, "float32") * 2
    if in_memory_bytes > psutil.virtual_memory().available:
        log.info("merge: base + merged copy (~%.1f GB) would not fit in RAM; streaming shard by shard", in_memory_bytes / 1e9)
        return True
    return False


TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "chat_template.*", "vocab.*",
                   "merges.txt", "*.model")


def tokenizer_folder(adapter: Adapter, folder: Path) -> Path:
    """Where the tokenizer lives: the adapter's (saved by training, chat template included), else the base's."""
    return adapter.path if (adapter.path / "tokenizer_config.json").is_file() else folder


def copy_tokenizer_files(source: Path, staging: Path) -> None:
    """The tokenizer files as they are (copying, not loading: a tokenizer can take 150 MB of memory)."""
    for pattern in TOKENIZER_FILES:
        for file in source.glob(pattern):
            shutil.copy2(file, staging / file.name)


def vocabulary_grows(tensors: dict, shapes: dict[str, tuple[int, ...]]) -> bool:
    """The adapter carries embedding rows the base lacks (tokens were added in training)."""
    return any(name in shapes and tensor.shape[0] > shapes[name][0] for name, tensor in full_tensors(tensors).items())


def probe_prompts(adapter: Adapter, tokenizer: Any, count: int = 4) -> list[list[int]]:
    """Questions from the adapter's latest validation predictions if any, else built-in ones, as prompts."""
    from bioqa.arguments import PromptArguments
    from bioqa.prompts import prompt_format, prompt_ids
    from bioqa.verification import BUILT_IN_PROBES

    files = sorted(adapter.path.glob("predictions/eval-step-*.jsonl"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    rows = [json.loads(line) for line in files[-1].read_text().splitlines()][:count] if files else []
    questions = [row["question"] for row in rows] or list(BUILT_IN_PROBES[:count])
    fmt = prompt_format(tokenizer, PromptArguments(**_prompt_options(adapter)))
    return [prompt_ids(tokenizer, fmt, question, "") for question in questions]


def run_config(adapter: Adapter) -> dict[str, Any]:
    """The options the adapter was trained with (run_config.yaml written by load_models.py), if any."""
    import yaml

    config_file = adapter.path / "run_config.yaml"
    return (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}


def _prompt_options(adapter: Adapter) -> dict[str, Any]:
    from dataclasses import fields

    from bioqa.arguments import PromptArguments

    config = run_config(adapter)
    return {f.name: config[f.name] for f in fields(PromptArguments) if f.name in config}


def run_in_memory(args: MergeArguments, adapter: Adapter, folder: Path, dtype: str, staging: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings, start = {}, time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(adapter, folder))
    model = load_peft_model(adapter, str(folder), tokenizer, args.device, args.trust_remote_code)
    prompts = probe_prompts(adapter, tokenizer) if args.verify else []
    reference = probe_model(model, tokenizer, prompts) if args.verify else None
    timings["load_s"] = time.perf_counter() - start
    merged = merge_in_memory(model, dtype)
    merged.save_pretrained(staging, max_shard_size=args.max_shard_size)
    timings["merge_and_save_s"] = time.perf_counter() - start - timings["load_s"]
    del model, merged
    gc.collect()
    verification = {"method": "skipped (--no_verify)", "passed": True}
    if args.verify:
        reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=getattr(torch, dtype)).to(args.device).eval()
        verification = compare_logits(reference, probe_model(reloaded, tokenizer, prompts), dtype)
        timings["verify_s"] = time.perf_counter() - start - sum(timings.values())
    return {"mode": "in memory (PEFT merge_and_unload)", "timings": timings, "verification": verification}


def run_streaming(args: MergeArguments, adapter: Adapter, tensors: dict, folder: Path, shards: list[Path], dtype: str, staging: Path) -> dict:
    start = time.perf_counter()
    errors = stream_merge(adapter, tensors, shards, staging, dtype)
    write_streamed_config(folder, staging, dtype)
    verification = weightwise_summary(errors, dtype) if args.verify else {"method": "skipped (--no_verify)", "passed": True}
    return {"mode": "streaming, one shard at a time", "timings": {"merge_and_save_s": time.perf_counter() - start},
            "verification": verification}


def finish_folder(staging: Path, adapter: Adapter, folder: Path, report: dict) -> None:
    copy_tokenizer_files(tokenizer_folder(adapter, folder), staging)
    if (adapter.path / "run_manifest.json").is_file():
        shutil.copy2(adapter.path / "run_manifest.json", staging / "run_manifest.json")
    write_json_atomic(staging / "merge_report.json", report)


def merge(argv: list[str] | None) -> int:
    args = parse(argv)
    logging.basicConfig(format="[bioqa] %(levelname)s %(message)s", level=logging.INFO, stream=sys.stderr)
    adapter = read_adapter(args.adapter_dir)
    base = args.base_model or adapter.base_model
    if not base:
        raise UsageError(f"{adapter.path}/adapter_config.json names no base model; pass --base_model")
    base = resolve_model_name(base)
    out, adapter_hash = output_path(args, adapter), file_sha256(adapter.weights_file)
    folder = base_files(base)
    shards = shard_files(folder)
    dtype = base_dtype(folder, shards) if args.dtype == "auto" else DTYPES[args.dtype]
    if already_merged(out, adapter_hash, base, dtype) and not args.overwrite:
        print(f"{out} already holds this adapter merged into {base} ({dtype}); nothing to do (--overwrite to redo)")
        return 0
    check_output_folder(out, "--output_dir", args.overwrite, "pass --overwrite to replace it")
    tensors, config = adapter_tensors(adapter), json.loads((folder / "config.json").read_text())
    tied = config.get("tie_word_embeddings", False)
    shapes = with_tied_head(tensor_shapes(shards), tied)
    vocab_grows = vocabulary_grows(tensors, shapes)
    check_shapes(adapter, tensors, shapes, vocab_grows)
    check_disk_space(out, estimated_output_bytes(shards, base_dtype(folder, shards), dtype))
    streaming = needs_streaming(args, shards, base_dtype(folder, shards))
    refusal = streaming_refusal(adapter, tensors, tied, vocab_grows) if streaming else None
    if refusal:
        raise UsageError(f"cannot merge shard by shard: {refusal}; drop --low_memory (needs RAM for the whole model)")
    log.info("merging %s into %s as %s (%s)", adapter.path, base, dtype, "streaming" if streaming else "in memory")
    if run_config(adapter).get("load_in_4bit"):
        log.info("the adapter was trained with QLoRA on a 4-bit base; it merges into the unquantized base, and the "
                 "verification measures the difference to base + adapter in full precision")
    report = {"base_model": base, "adapter": {"path": str(adapter.path), "sha256": adapter_hash}, "dtype": dtype,
              "started_at": utc_now(), "note": "the base is loaded unquantized: a QLoRA adapter merges into full-precision weights"}
    with staged_folder(out) as staging:
        result = (run_streaming(args, adapter, tensors, folder, shards, dtype, staging) if streaming
                  else run_in_memory(args, adapter, folder, dtype, staging))
        report.update(result, finished_at=utc_now(), peak_memory_mb=round(peak_memory_mb(), 1))
        if not result["verification"]["passed"]:
            raise RunError(f"verification failed, nothing kept: {json.dumps(result['verification'])}")
        finish_folder(staging, adapter, folder, report)
    print(f"merged model: {out} ({report['mode']}; verification: {report['verification']['method']}, passed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: merge(argv))


if __name__ == "__main__":
    sys.exit(main())
