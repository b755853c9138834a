"""Merging an adapter into its base: any peft weight adapter in memory with PEFT, LoRA also shard by shard.

Both do the arithmetic in float32 and cast once to the target dtype, and refuse non-finite weights.
* In memory: the base loads in float32 (never 4-bit: an adapter trained with QLoRA merges into the
  unquantized base), PEFT's `merge_and_unload` folds the adapter in, and modules trained in full or
  a resized vocabulary come along; a trained output head of a model with tied embeddings is untied.
* Streaming: each safetensors shard of the base is read, its LoRA-targeted weights get
  W + scale * B @ A, and it is written out before the next is read, so memory holds one shard.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioqa.errors import InputError, RunError, option, short
from bioqa.hardware import free_memory_bytes
from bioqa.io.files import read_json
from bioqa.io.hub import TOKENIZER_FILES
from bioqa.merging.adapters import Adapter, full_tensors, lora_biases, lora_pairs
from bioqa.merging.verification import weight_probe_error
from bioqa.train.modeling import load_error
from bioqa.train.peft_methods import unconverted_init

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("bioqa")
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


# ----------------------------------------------------------------------------- the base checkpoint


def base_files(base: str, need_weights: bool = True) -> Path:
    """The base checkpoint as a local folder: the folder itself, or the Hub snapshot it names."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"] if need_weights else ["*.json"]
    try:
        return Path(snapshot_download(base, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown id, gated: huggingface_hub raises several types
        raise InputError(
            f"base model {base!r} is not a local folder and the Hugging Face Hub did not provide it "
            f"({short(str(exc), 160)}); offline, pass a local folder with {option('base_model')}"
        ) from None


def shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index, "the base model's shard index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(f"{index} has no weight_map; the base model folder is damaged, download it again")
        names = sorted(set(weight_map.values()))
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise InputError(
        f"{folder} has no safetensors weights (model.safetensors or an index); convert the base "
        f"to safetensors, or merge without {option('low_memory')}"
    )


def tensor_shapes(shards: list[Path]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every base tensor, read from the safetensors headers (no weights load)."""
    from safetensors import safe_open

    shapes = {}
    for shard in shards:
        try:
            with safe_open(shard, framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise InputError(
                f"cannot read {shard}: {short(str(exc), 160)}; the base model file is damaged, download it again"
            ) from None
    return shapes


def with_tied_head(shapes: dict[str, tuple[int, ...]], tied: bool) -> dict[str, tuple[int, ...]]:
    """A tied output head is not stored; it has the input embedding's shape."""
    embedding = next(
        (k for k in shapes if k.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight"))), None
    )
    if tied and "lm_head.weight" not in shapes and embedding:
        return {**shapes, "lm_head.weight": shapes[embedding]}
    return shapes


def vocabulary_grows(tensors: dict, shapes: dict[str, tuple[int, ...]]) -> bool:
    """The adapter carries embedding rows the base lacks (tokens were added in training)."""
    return any(name in shapes and tensor.shape[0] > shapes[name][0] for name, tensor in full_tensors(tensors).items())


def check_shapes(
    adapter: Adapter, tensors: dict[str, Any], shapes: dict[str, tuple[int, ...]], vocab_grows: bool
) -> None:
    """InputError naming the first adapter weight that does not fit the base."""
    for name, (a, b) in lora_pairs(tensors).items():
        expected = shapes.get(name)
        if expected is None or (b.shape[0], a.shape[1]) != tuple(expected[:2]):
            raise InputError(
                f"the adapter does not fit this base: {name} is {expected} in the base but the LoRA "
                f"pair makes {(b.shape[0], a.shape[1])}; use the base it was trained on ({option('base_model')})"
            )
    for name, bias in lora_biases(tensors).items():
        if shapes.get(name) != tuple(bias.shape):
            raise InputError(
                f"the adapter holds lora_B.bias tensors (trained with lora_bias=True), but the base has no "
                f"{name} of shape {tuple(bias.shape)} to add them to, so a plain checkpoint cannot hold "
                "them; load base + adapter with PEFT instead of merging, or train without lora_bias"
            )
    for name, tensor in full_tensors(tensors).items():
        expected = shapes.get(name)
        resized = vocab_grows and expected is not None and tensor.shape[1:] == expected[1:]
        if expected is None or (tuple(tensor.shape) != expected and not resized):
            raise InputError(
                f"the adapter does not fit this base: {name} is {expected} in the base but "
                f"{tuple(tensor.shape)} in the adapter; use the base it was trained on ({option('base_model')})"
            )


def base_dtype(folder: Path, shards: list[Path]) -> str:
    config = read_json(folder / "config.json", "the base model's config")
    named = config.get("dtype") or config.get("torch_dtype")
    if named in DTYPES:
        return DTYPES[named]
    from safetensors import safe_open

    with safe_open(shards[0], framework="pt") as handle:
        stored = handle.get_slice(next(iter(handle.keys()))).get_dtype()
    return {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(stored, "float32")


def check_finite(name: str, tensor: Any) -> None:
    import torch

    if not torch.isfinite(tensor).all():
        raise RunError(
            f"merged weight {name} holds NaN or inf; the adapter is damaged or diverged in training, "
            "merge an earlier checkpoint"
        )


# ----------------------------------------------------------------------------- in memory


def load_peft_model(
    adapter: Adapter, base: str, tokenizer: PreTrainedTokenizerBase, device: str, trust_remote_code: bool
):
    """Base (float32) + adapter, unmerged: the reference the merged model must equal."""
    import torch
    from peft import PeftModel
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError) as exc:
        raise load_error("model", base, exc, "base_model") from None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # the adapter was trained with added tokens
    try:
        model = PeftModel.from_pretrained(model, adapter.path, is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # size mismatches are RuntimeErrors
        raise InputError(
            f"peft cannot load the {adapter.kind} adapter {adapter.path} onto {base}: {short(str(exc), 240)}; use "
            f"the base it was trained on ({option('base_model')})"
        ) from None
    return model.to(device).eval()


def merge_in_memory(peft_model: Any, dtype: str):
    """merge_and_unload in float32, untie a trained output head, check finiteness, cast once."""
    import torch

    try:
        merged = peft_model.merge_and_unload()
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # a method or layer peft cannot fold in
        raise RunError(f"peft could not merge the adapter: {short(str(exc), 240)}; nothing was written") from None
    head, embed = merged.get_output_embeddings(), merged.get_input_embeddings()
    if (
        getattr(merged.config, "tie_word_embeddings", False)
        and head is not None
        and head.weight is not embed.weight
        and not torch.equal(head.weight, embed.weight)
    ):
        merged.config.tie_word_embeddings = False  # the adapter trained the head apart from the embeddings
        log.info("merge: the output head differs from the tied input embeddings now; saving them untied")
    for name, parameter in merged.named_parameters():
        check_finite(name, parameter)
    return merged.to(getattr(torch, dtype))


# ----------------------------------------------------------------------------- streaming


def streaming_refusal(adapter: Adapter, tensors: dict[str, Any], tied: bool, vocab_grows: bool) -> str | None:
    """Why this adapter cannot be merged shard by shard (None if it can)."""
    if not adapter.is_lora:
        return f"the streaming merge reads LoRA adapters (plain, rsLoRA, rank patterns), not {adapter.kind}"
    if init := unconverted_init(adapter.config):
        return f"the adapter was saved unconverted with init_lora_weights {init}, which changes the base weights"
    if adapter.uses_dora:
        return "DoRA adapters are merged in memory only (their magnitude vectors need the whole weight)"
    if any("lora_embedding" in key or "lora_magnitude" in key for key in tensors):
        return "LoRA on embedding layers is merged in memory only"
    touched = set(lora_pairs(tensors)) | set(full_tensors(tensors))
    if tied and touched & {"lm_head.weight", "model.embed_tokens.weight"}:
        return "the adapter changes tied input/output embeddings, which must be untied in memory"
    if vocab_grows:
        return "the adapter's tokenizer added tokens, so the vocabulary must be resized in memory"
    if adapter.config.get("fan_in_fan_out"):
        return "fan_in_fan_out (GPT-2 style Conv1D) adapters are merged in memory only"
    return None


@dataclass
class StreamPlan:
    """What the streaming merge changes, by base tensor name, and the probe errors it measured."""

    pairs: dict[str, tuple[Any, Any]]  # weight -> (lora_A, lora_B)
    biases: dict[str, Any]  # bias -> lora_B bias (lora_bias=True)
    full: dict[str, Any]  # weight -> replacement (modules trained in full)
    scale: Callable[[str], float]  # module -> LoRA scaling
    errors: dict[str, float] = field(default_factory=dict)

    def merged(self, name: str, weight: Any, generator: Any, dtype: Any):
        if name in self.full:
            return self.full[name].to(dtype)
        if name in self.biases:  # b + scale * lora_B.bias, as PEFT merges it
            merged = weight.float() + self.scale(name[: -len(".bias")]) * self.biases[name].float()
        elif name in self.pairs:
            a, b = (t.float() for t in self.pairs[name])
            s = self.scale(name[: -len(".weight")])
            merged = weight.float() + s * (b @ a)
        else:
            return weight.to(dtype)
        check_finite(name, merged)
        merged = merged.to(dtype)  # once: the probe measures the weight as it is written
        if name in self.pairs:
            self.errors[name] = weight_probe_error(weight, merged, lambda x: s * (b @ (a @ x)), generator)
        return merged


SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def _write_shard(
    path: Path, names: list[str], shapes: dict[str, tuple[int, ...]], dtype: str, tensor_of: Callable
) -> None:
    """Write a safetensors file one tensor at a time (the format: u64 header length, JSON header with
    each tensor's dtype, shape and byte range, then the raw little-endian bytes), so memory holds one
    tensor instead of the whole shard plus its serialised copy, as `safetensors.torch.save_file` does."""
    import struct

    import torch

    size = bytes_per_element(dtype)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in names:
        nbytes = math.prod(shapes[name]) * size
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shapes[name]),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the reference writer aligns the data to 8 bytes
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for name in names:
            handle.write(tensor_of(name).contiguous().reshape(-1).view(torch.uint8).numpy())  # no extra copy


def stream_merge(
    adapter: Adapter, tensors: dict[str, Any], shards: list[Path], staging: Path, dtype: str
) -> dict[str, float]:
    """Write the merged shards into `staging`; return the relative probe error of each merged weight."""
    import torch
    from safetensors import safe_open
    from tqdm.auto import tqdm

    plan = StreamPlan(lora_pairs(tensors), lora_biases(tensors), full_tensors(tensors), adapter.scale)
    generator, weight_map = torch.Generator().manual_seed(0), {}
    target = getattr(torch, dtype)
    for shard in tqdm(shards, desc="merging shards", unit="shard"):
        with safe_open(shard, framework="pt") as handle:
            names = list(handle.keys())
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
            shapes.update({name: tuple(plan.full[name].shape) for name in names if name in plan.full})
            _write_shard(
                staging / shard.name,
                names,
                shapes,
                dtype,
                lambda name: plan.merged(name, handle.get_tensor(name), generator, target),
            )
        weight_map.update({name: shard.name for name in names})
    if len(shards) > 1:
        total = sum((staging / s.name).stat().st_size for s in shards)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (staging / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    missing = (set(plan.pairs) | set(plan.biases) | set(plan.full)) - set(weight_map)
    if missing:
        raise InputError(f"the adapter targets {sorted(missing)[0]}, which the base does not have; use its own base")
    return plan.errors


def write_streamed_config(folder: Path, staging: Path, dtype: str) -> None:
    """config.json (with the new dtype) and generation_config.json of the base, into the merged folder."""
    config = read_json(folder / "config.json", "the base model's config")
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    if (folder / "generation_config.json").is_file():
        (staging / "generation_config.json").write_text((folder / "generation_config.json").read_text())


def bytes_per_element(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def estimated_output_bytes(shards: list[Path], source_dtype: str, dtype: str) -> int:
    return math.ceil(sum(s.stat().st_size for s in shards) * bytes_per_element(dtype) / bytes_per_element(source_dtype))


# Besides weights and tokenizer: config, generation config, model card, manifest and report (a few kB each), and
# the file system's own blocks; a margin, so that the check is never the one that passes and the write that fails.
WRITE_MARGIN_BYTES = 4 * 2**20


def check_disk_space(out: Path, needed: int) -> None:
    """Free space for `needed` bytes plus WRITE_MARGIN_BYTES where `out` will be written, or InputError."""
    needed += WRITE_MARGIN_BYTES
    parent = next(p for p in [out, *out.parents] if p.exists())
    free = shutil.disk_usage(parent).free
    if needed * 1.05 > free:
        raise InputError(
            f"not enough disk space for the merged model in {parent}: it needs about {needed / 1e6:,.1f} MB and "
            f"{free / 1e6:,.1f} MB are free; free space or choose another {option('output_dir')}"
        )


def check_device_memory(device: str, needed: int) -> None:
    """A base held in float32 on a GPU (the in-memory merge, and the reference its verification compares with)
    must fit in the memory free there: an 8B base is 32 GB in float32."""
    if device == "cpu":
        return
    free = free_memory_bytes(device)
    if free is not None and needed * 1.1 > free:
        raise InputError(
            f"{option('device')} {device}: the merge holds the base in float32 there, about {needed / 1e9:.1f} GB, "
            f"and {free / 1e9:.1f} GB of it is free; merge on the CPU ({option('device')} cpu, the default: the "
            f"same float32 arithmetic in RAM, or shard by shard with {option('low_memory')}), or free the device"
        )


def fits_in_memory(shards: list[Path], source_dtype: str, copies: int) -> bool:
    """Whether `copies` float32 copies of the base fit in the memory available now."""
    import psutil

    return estimated_output_bytes(shards, source_dtype, "float32") * copies <= psutil.virtual_memory().available


def needs_streaming(low_memory: bool, shards: list[Path], source_dtype: str) -> bool:
    """--low_memory, or a float32 copy of the base would not fit in the available RAM twice."""
    if low_memory:
        return True
    if not fits_in_memory(shards, source_dtype, copies=2):
        log.info("merge: base + merged copy would not fit in RAM; streaming shard by shard")
        return True
    return False


def tokenizer_bytes(source: Path) -> int:
    """What copy_tokenizer_files will write: Llama 3's tokenizer.json alone is 17 MB."""
    return sum((source / name).stat().st_size for name in TOKENIZER_FILES if (source / name).is_file())


def copy_tokenizer_files(source: Path, staging: Path) -> None:
    """The tokenizer files as they are (copying, not loading: a tokenizer can take 150 MB of memory)."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
