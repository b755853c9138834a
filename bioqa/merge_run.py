"""A merge run: a LoRA adapter merged into its base model, a verified checkpoint for plain `from_pretrained`.

The base is read from the adapter's own adapter_config.json (`base_model` overrides). The merged model
(safetensors, sharded), the tokenizer with its chat template, generation_config.json, the adapter's
run_manifest.json, a model card (README.md) and a merge_report.json are written to a temporary folder beside
the target and renamed into place only after the verification passed; `push_to_hub` then uploads the folder.
`bioqa.merge` (Python) and `bioqa-merge` (bioqa/cli/merge.py: flags to `MergeSettings`) both run `merge_run`;
the mechanics (shapes, streaming, memory and disk checks) are in bioqa/merging/merge.py.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.devices import available_device
from bioqa.errors import InputError, RunError, option, raise_problems
from bioqa.io.files import (
    damaged_files,
    file_sha256,
    read_json,
    read_text,
    staged_folder,
    write_json_atomic,
    write_text_atomic,
)
from bioqa.io.hub import MERGED_FILES, hub_problems, push_folder, token_available
from bioqa.io.inventory import file_record, file_records, write_inventory
from bioqa.io.outputs import MERGE_OUTPUT, check_not_an_input, check_output_folder, check_own_output, output_lock
from bioqa.io.provenance import peak_device_memory_mb, peak_memory_mb, utc_now
from bioqa.merging.adapters import Adapter, adapter_tensors, check_tensors, other_base_warning, read_adapter, same_base
from bioqa.merging.merge import (
    DTYPES,
    base_dtype,
    base_files,
    check_device_memory,
    check_disk_space,
    check_shapes,
    copy_tokenizer_files,
    estimated_output_bytes,
    fits_in_memory,
    load_peft_model,
    merge_in_memory,
    needs_streaming,
    shard_files,
    stream_merge,
    streaming_refusal,
    tensor_shapes,
    tokenizer_bytes,
    vocabulary_grows,
    with_tied_head,
    write_streamed_config,
)
from bioqa.merging.verification import (
    adapted_weights,
    compare_logits,
    probe_model,
    probe_prompts,
    run_config,
    weightwise_summary,
)
from bioqa.model_card import merged_card
from bioqa.train.modeling import hub_reachable, resolve_model_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")


@dataclass(frozen=True)
class MergeSettings:
    """The settings of a merge; `bioqa-merge` has a flag for each."""

    adapter_dir: str = field(
        metadata={"help": "Folder of the trained adapter (adapter_config.json + weights); the only required flag."}
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "Base model (Hub id or folder); default: the adapter's base_model_name_or_path."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to write the merged model; default: <adapter_dir>-merged."}
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the merged weights; auto = the base's own.",
            "choices": ["auto", "bf16", "fp16", "fp32"],
        },
    )
    max_shard_size: str = field(
        default="2GB",
        metadata={"help": "Largest safetensors shard (in-memory merge; streaming keeps the base's shards)."},
    )
    device: str = field(
        default="cpu",
        metadata={"help": "Device for the in-memory merge and the verification.", "choices": ["cpu", "cuda", "mps"]},
    )
    low_memory: bool = field(
        default=False,
        metadata={"help": "Stream the base shard by shard (automatic when it would not fit in RAM twice)."},
    )
    verify: bool = field(
        default=True, metadata={"help": "Check the merged model against base + adapter (false: skip the check)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace an earlier merge in output_dir (only the files it recorded in written_files.json; a "
            "folder holding any other file, or one changed since, is refused)."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the Hub to run."})
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Upload the merged model (weights, tokenizer, card, reports) to the Hugging Face Hub once it is "
            "complete and verified."
        },
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "Hub repository for push_to_hub, e.g. me/my-model; default: the output folder's name."},
    )


def settings_problems(settings: MergeSettings) -> list[str]:
    """Every value that cannot work, checked before anything is read."""
    from transformers.utils.hub import convert_file_size_to_int

    try:
        size = convert_file_size_to_int(settings.max_shard_size)
    except ValueError:
        size = 0
    if size > 0:
        return []
    return [
        f"{option('max_shard_size')} {settings.max_shard_size} is not a size; give one such as 2GB, 500MB or 5000000"
    ]


def output_path(args: MergeSettings, adapter: Adapter) -> Path:
    return Path(args.output_dir) if args.output_dir else adapter.path.parent / f"{adapter.path.name}-merged"


def already_merged(out: Path, adapter_hash: str, base: str, dtype: str) -> bool:
    """Whether `out` holds this adapter merged into `base` as `dtype`, every file intact: sizes and hashes as
    merge_report.json recorded them. A report that matches but files that do not is a InputError."""
    report = out / "merge_report.json"
    if out.is_symlink() or not report.is_file():
        return False
    try:
        previous = json.loads(report.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(
            f"{report} is damaged (not valid JSON); remove the damaged merge (rm -r {out}) and merge again"
        ) from None
    if not isinstance(previous, dict) or (
        previous.get("adapter", {}).get("sha256"),
        previous.get("base_model"),
        previous.get("dtype"),
    ) != (adapter_hash, base, dtype):
        return False
    damaged = damaged_files(out, previous.get("files"), report.name)
    if damaged:
        raise InputError(
            f"{out} holds this merge, but {damaged}; the merged model is damaged: remove it (rm -r {out}) and "
            "merge again"
        )
    return True


def tokenizer_folder(adapter: Adapter, folder: Path) -> Path:
    """Where the tokenizer lives: the adapter's (saved by training, chat template included), else the base's."""
    return adapter.path if (adapter.path / "tokenizer_config.json").is_file() else folder


def skipped() -> dict:
    return {"method": f"skipped ({option('no_verify')})", "passed": None}


def reference_probe(args: MergeSettings, adapter: Adapter, folder: Path) -> tuple[Any, Any, list, Any]:
    """Base (float32) + adapter as PEFT itself loads and runs them, the probe prompts, and its logits: the
    reference a merged model must equal, independent of how the merge read the adapter."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(adapter, folder))
    model = load_peft_model(adapter, str(folder), tokenizer, args.device, args.trust_remote_code)
    prompts = probe_prompts(adapter, tokenizer) if args.verify else []
    return model, tokenizer, prompts, probe_model(model, tokenizer, prompts) if args.verify else None


def verify_from_disk(
    args: MergeSettings, staging: Path, tokenizer: PreTrainedTokenizerBase, prompts: list, reference: Any, dtype: str
) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=getattr(torch, dtype)).to(args.device).eval()
    return compare_logits(reference, probe_model(reloaded, tokenizer, prompts), dtype)


def run_in_memory(args: MergeSettings, adapter: Adapter, folder: Path, dtype: str, staging: Path) -> dict:
    timings, start = {}, time.perf_counter()
    model, tokenizer, prompts, reference = reference_probe(args, adapter, folder)
    timings["load_s"] = time.perf_counter() - start
    merged = merge_in_memory(model, dtype)
    merged.save_pretrained(staging, max_shard_size=args.max_shard_size)
    timings["merge_and_save_s"] = time.perf_counter() - start - timings["load_s"]
    del model, merged
    gc.collect()
    verification = skipped()
    if args.verify:
        verification = verify_from_disk(args, staging, tokenizer, prompts, reference, dtype)
        timings["verify_s"] = time.perf_counter() - start - sum(timings.values())
    return {"mode": "in memory (PEFT merge_and_unload)", "timings": timings, "verification": verification}


def run_streaming(
    args: MergeSettings,
    adapter: Adapter,
    tensors: dict,
    folder: Path,
    shards: list[Path],
    dtypes: tuple[str, str],
    staging: Path,
) -> dict:
    """Shard by shard, from the base's dtype to the merged one (`dtypes`). Verified against PEFT's own base +
    adapter from disk when a float32 copy of the base fits in memory once; else weight by weight (which rests
    on this merge's reading of the adapter)."""
    (source_dtype, dtype), start, reference = dtypes, time.perf_counter(), None
    if args.verify and fits_in_memory(shards, source_dtype, copies=1):
        model, tokenizer, prompts, reference = reference_probe(args, adapter, folder)
        del model
        gc.collect()
    errors = stream_merge(adapter, tensors, shards, staging, dtype)
    write_streamed_config(folder, staging, dtype)
    timings = {"merge_and_save_s": time.perf_counter() - start}
    if reference is not None:
        verification = verify_from_disk(args, staging, tokenizer, prompts, reference, dtype)
    else:
        verification = weightwise_summary(errors, dtype, adapted_weights(tensors)) if args.verify else skipped()
    return {"mode": "streaming, one shard at a time", "timings": timings, "verification": verification}


def finish_folder(staging: Path, adapter: Adapter, folder: Path, report: dict, out: Path) -> dict:
    """Tokenizer, the adapter's manifest, the model card and merge_report.json (with every file's hash) beside
    the merged weights; returns what merge_report.json holds."""
    copy_tokenizer_files(tokenizer_folder(adapter, folder), staging)
    if (adapter.path / "run_manifest.json").is_file():
        shutil.copy2(adapter.path / "run_manifest.json", staging / "run_manifest.json")
    card = adapter.path / "README.md"
    adapter_card = read_text(card, "the adapter's model card") if card.is_file() else None
    write_text_atomic(staging / "README.md", merged_card(str(out), report, adapter_card))
    records = file_records(staging)
    written = {**report, "files": records}
    write_json_atomic(staging / "merge_report.json", written)
    write_inventory(staging, MERGE_OUTPUT, {**records, "merge_report.json": file_record(staging / "merge_report.json")})
    return written


@dataclass(frozen=True)
class MergeReport:
    """What a merge did: where the merged model is, its merge_report.json, whether an intact one was already
    there (nothing merged), and the Hub address it was pushed to."""

    output_dir: Path
    report: dict[str, Any] = field(repr=False)
    already_merged: bool = False
    hub_url: str | None = None

    @property
    def verification(self) -> dict[str, Any]:
        return self.report.get("verification", {})

    def summary(self) -> str:
        """The lines bioqa-merge prints."""
        out, report = self.output_dir, self.report
        if self.already_merged:
            lines = [
                f"{out} already holds this adapter merged into {report.get('base_model')} ({report.get('dtype')}), "
                f"every file intact; nothing to do ({option('overwrite')} to redo)"
            ]
        else:
            passed = self.verification.get("passed")
            outcome = self.verification.get("method") if passed is None else f"{self.verification['method']}, passed"
            lines = [f"merged model: {out} ({report['mode']}; verification: {outcome})"]
        return "\n".join(lines + ([f"pushed {out} to {self.hub_url}"] if self.hub_url else []))


def run(settings: MergeSettings) -> MergeReport:
    """Merge, verify and write the merged model as `settings` say; InputError / RunError say what stopped it."""
    raise_problems(settings_problems(settings))
    if settings.device != "cpu":
        available_device(settings.device, instead="cpu")  # a GPU this machine has and torch can use
    adapter = read_adapter(settings.adapter_dir)
    base = settings.base_model or adapter.base_model
    if not base:
        raise InputError(f"{adapter.path}/adapter_config.json names no base model; pass {option('base_model')}")
    if warning := other_base_warning(adapter.path, adapter.base_model, base):
        log.warning("%s", warning)
    if settings.push_to_hub:
        raise_problems(hub_problems(offline=not hub_reachable(), has_token=token_available(None)))
    base = resolve_model_name(base)
    out, folder = output_path(settings, adapter), base_files(base)
    check_not_an_input(out, "output_dir", {"adapter": adapter.path, "base model": folder})
    with output_lock(out, "output_dir"):
        done = merge_locked(settings, adapter, base, folder, out)
        if settings.push_to_hub:  # merged and verified, or found intact: the folder is complete
            url = push_folder(
                out,
                settings.hub_model_id or out.resolve().name,
                MERGED_FILES,
                message=f"bioqa-lora: {adapter.path.name} merged into {base}",
            )
            done = MergeReport(done.output_dir, done.report, done.already_merged, url)
    return done


def merge_locked(args: MergeSettings, adapter: Adapter, base: str, folder: Path, out: Path) -> MergeReport:
    adapter_hash, shards = file_sha256(adapter.weights_file), shard_files(folder)
    source_dtype = base_dtype(folder, shards)
    dtype = source_dtype if args.dtype == "auto" else DTYPES[args.dtype]
    if not args.overwrite and already_merged(out, adapter_hash, base, dtype):
        return MergeReport(out, read_json(out / "merge_report.json", "the merge report"), already_merged=True)
    check_output_folder(out, "output_dir", MERGE_OUTPUT, args.overwrite, f"pass {option('overwrite')} to replace it")
    tensors, streaming = plan_merge(adapter, folder, shards, source_dtype, args.low_memory)
    # in memory, the merge and its reference run on the device; streaming, only a reference that fits in RAM does
    if not streaming or (args.verify and fits_in_memory(shards, source_dtype, copies=1)):
        check_device_memory(args.device, estimated_output_bytes(shards, source_dtype, "float32"))
    written = estimated_output_bytes(shards, source_dtype, dtype) + tokenizer_bytes(tokenizer_folder(adapter, folder))
    check_disk_space(out, written)
    log.info("merging %s into %s as %s (%s)", adapter.path, base, dtype, "streaming" if streaming else "in memory")
    if run_config(adapter).get("load_in_4bit"):
        log.info(
            "the adapter was trained with QLoRA on a 4-bit base; it merges into the unquantized base, and the "
            "verification measures the difference to base + adapter in full precision"
        )
    report = {
        "base_model": base,
        "adapter": {"path": str(adapter.path), "sha256": adapter_hash, "trained_on": adapter.base_model},
        "base_is_the_adapters_own": same_base(adapter.base_model, base),
        "dtype": dtype,
        "started_at": utc_now(),
        "note": "the base is loaded unquantized: a QLoRA adapter merges into full-precision weights",
    }
    with staged_folder(out, lambda: check_own_output(out, "output_dir", MERGE_OUTPUT)) as staging:
        result = (
            run_streaming(args, adapter, tensors, folder, shards, (source_dtype, dtype), staging)
            if streaming
            else run_in_memory(args, adapter, folder, dtype, staging)
        )
        peak = {
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "peak_device_memory_mb": peak_device_memory_mb(args.device),
        }
        report.update(result, finished_at=utc_now(), **peak)
        if result["verification"]["passed"] is False:
            raise RunError(f"verification failed, nothing kept: {json.dumps(result['verification'])}")
        written = finish_folder(staging, adapter, folder, report, out)
    return MergeReport(out, written)


def plan_merge(
    adapter: Adapter, folder: Path, shards: list[Path], source_dtype: str, low_memory: bool
) -> tuple[dict, bool]:
    """The adapter's tensors checked against the base's shapes, and whether to merge shard by shard (refused where
    the adapter needs the whole model at once)."""
    streaming, tensors, tied, grows = needs_streaming(low_memory, shards, source_dtype), {}, False, False
    if adapter.is_lora:  # peft reads and checks the tensors of other kinds itself, merging in memory
        tied = bool(read_json(folder / "config.json", "the base model's config").get("tie_word_embeddings", False))
        shapes = with_tied_head(tensor_shapes(shards), tied)
        tensors = checked_tensors(adapter, shapes)
        grows = vocabulary_grows(tensors, shapes)
    refusal = streaming_refusal(adapter, tensors, tied, grows) if streaming else None
    if refusal:
        raise InputError(
            f"cannot merge shard by shard: {refusal}; drop {option('low_memory')} (needs RAM for the whole model)"
        )
    return tensors, streaming


def checked_tensors(adapter: Adapter, shapes: dict[str, tuple[int, ...]]) -> dict:
    """The adapter's tensors, each of a kind the merge uses, consistent with its config and the base's shapes."""
    tensors = adapter_tensors(adapter)
    check_tensors(adapter, tensors)
    check_shapes(adapter, tensors, shapes, vocabulary_grows(tensors, shapes))
    return tensors
