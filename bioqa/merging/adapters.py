"""A saved peft adapter folder: what it says about itself, read without loading any model.

The base model comes from the adapter's own `adapter_config.json` (`base_model_name_or_path`), its kind from
`peft_type` (any weight adapter merges in memory; the streaming merge reads LoRA only), the scale of each
LoRA pair from its r / alpha (with rank and alpha patterns, and rsLoRA), and the
tensors from `adapter_model.safetensors`: `base_model.model.<module>.lora_A.weight` / `lora_B`
for LoRA pairs, `base_model.model.<module>.weight` for modules trained in full (modules_to_save).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioqa.errors import InputError, option, short
from bioqa.io.files import wrong_kind
from bioqa.train.peft_methods import merge_refusal

PREFIX = "base_model.model."
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Adapter:
    path: Path
    config: dict[str, Any]

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    @property
    def kind(self) -> str:
        """peft's name of the method (LORA, IA3, LOHA, ...)."""
        return str(self.config.get("peft_type"))

    @property
    def is_lora(self) -> bool:
        return self.kind == "LORA"

    @property
    def uses_dora(self) -> bool:
        return bool(self.config.get("use_dora"))

    @property
    def weights_file(self) -> Path:
        return next(self.path / name for name in ADAPTER_WEIGHTS if (self.path / name).is_file())

    def scale(self, module: str) -> float:
        """LoRA scaling of `module`: alpha / r, or alpha / sqrt(r) with rsLoRA; patterns as PEFT applies them."""
        r = _pattern_value(self.config.get("rank_pattern") or {}, module, self.config["r"])
        alpha = _pattern_value(self.config.get("alpha_pattern") or {}, module, self.config["lora_alpha"])
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """The value of the first pattern matching the end of `module`, as peft.utils.other.get_pattern_key
    matches them (restated here: importing peft costs the streaming merge ~100 MB of memory)."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def same_base(trained_on: str | None, base: str) -> bool:
    """Whether `base` is the model the adapter names as its base (`trained_on`): the same name, the same folder
    (links resolved), or a local copy of the Hub model of that name (models/SmolLM2-135M-Instruct for
    HuggingFaceTB/SmolLM2-135M-Instruct). An adapter that names none is given the benefit of the doubt."""
    if not trained_on or trained_on == base:
        return True
    if Path(trained_on).exists() and Path(base).exists():
        return Path(trained_on).resolve() == Path(base).resolve()
    return Path(trained_on.rstrip("/")).name == Path(base.rstrip("/")).name


def other_base_warning(adapter: str | Path, trained_on: str | None, base: str) -> str | None:
    """A warning line for an adapter used on another base than the one it was trained on, else None: the shapes
    may match (a fine-tune of the same architecture) while the weights it adapts are not the ones it learnt on."""
    if same_base(trained_on, base):
        return None
    return (
        f"the adapter {adapter} was trained on {trained_on} (its adapter_config.json) but is used with {base}; "
        "the shapes fit, the weights it adapts are not the ones it learnt on"
    )


def read_adapter(path: str | Path) -> Adapter:
    """The adapter folder at `path`; InputError if it is missing, damaged or of a kind that cannot be merged."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"{option('adapter_dir')} {wrong_kind(path, 'a folder')}; give the output folder of a training run"
        )
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise InputError(
            f"{option('adapter_dir')} {path} is not an adapter: it has no adapter_config.json; give the "
            "folder load_models.py wrote (or one of its checkpoint-* folders)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_file} is not valid JSON ({exc}); the adapter folder is damaged") from None
    if not isinstance(config, dict):
        raise InputError(
            f"{config_file} holds a JSON {type(config).__name__}, not an adapter config; the adapter folder is damaged"
        )
    if refusal := merge_refusal(config.get("peft_type")):
        raise InputError(f"{path} cannot be merged: {refusal}")
    bad = [
        key
        for key in (("r", "lora_alpha") if config.get("peft_type") == "LORA" else ())
        if isinstance(config.get(key), bool) or not isinstance(config.get(key), (int, float)) or config[key] <= 0
    ]
    if bad:
        raise InputError(
            f"{config_file} has no positive {' or '.join(bad)}; the adapter folder is damaged, copy it again"
        )
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        raise InputError(f"{path} has adapter_config.json but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    return Adapter(path, config)


def adapter_tensors(adapter: Adapter) -> dict[str, Any]:
    """The adapter's tensors, keyed as saved; a damaged file is a InputError."""
    try:
        if adapter.weights_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(adapter.weights_file)
        import torch

        return torch.load(adapter.weights_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors / torch raise several types for a corrupt file
        raise InputError(
            f"cannot read {adapter.weights_file}: {short(str(exc), 200)}; the adapter file is damaged, copy it again"
        ) from None


# Every kind of tensor a LoRA adapter file may hold, by the end of its key; any other key is refused, so
# no tensor of an adapter is ever left out of a merge without a word.
LORA_KINDS = (
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora_B.bias",
    ".lora_embedding_A",
    ".lora_embedding_B",
    ".lora_magnitude_vector",
    ".lora_magnitude_vector.weight",
)


def check_tensors(adapter: Adapter, tensors: dict[str, Any]) -> None:
    """InputError naming the first tensor the merge would not use, or that contradicts adapter_config.json:
    an unknown kind, half a LoRA pair, or a rank other than the config's r (and rank_pattern)."""
    for key, value in tensors.items():
        if not key.startswith(PREFIX):
            raise InputError(
                f"{adapter.weights_file} holds {key}, which is not a PEFT adapter tensor "
                f"({PREFIX}...); the adapter file is damaged or not from PEFT"
            )
        if "lora_" in key and not key.endswith(LORA_KINDS):
            kind = key[key.index("lora_") :]
            raise InputError(
                f"{adapter.weights_file} holds tensors of a kind this merge does not handle ({kind}, "
                f"e.g. {key}); merge with a PEFT version that wrote it, or retrain without that option"
            )
        if key.endswith(".lora_A.weight"):
            _check_pair(adapter, tensors, key[len(PREFIX) : -len(".lora_A.weight")], value)
    orphans = [k for k in tensors if k.endswith(".lora_B.weight") and k.replace(".lora_B.", ".lora_A.") not in tensors]
    if orphans:
        raise InputError(f"{adapter.weights_file} holds {orphans[0]} without its lora_A; the adapter file is damaged")


def _check_pair(adapter: Adapter, tensors: dict[str, Any], module: str, a: Any) -> None:
    b = tensors.get(f"{PREFIX}{module}.lora_B.weight")
    if b is None:
        raise InputError(
            f"{adapter.weights_file} holds {module}.lora_A without its lora_B; the adapter file is damaged"
        )
    rank = _pattern_value(adapter.config.get("rank_pattern") or {}, module, adapter.config.get("r"))
    if a.shape[0] != rank or b.shape[1] != rank:
        raise InputError(
            f"{module} has LoRA rank {a.shape[0]} in {adapter.weights_file} but adapter_config.json says "
            f"r = {rank}; the adapter folder mixes two adapters, copy it again from one run"
        )
    if not targets_module(adapter.config, module):
        raise InputError(
            f"{adapter.weights_file} adapts {module}, which adapter_config.json's target_modules "
            f"({adapter.config.get('target_modules')}) does not name; the adapter folder mixes two adapters"
        )


def targets_module(config: dict[str, Any], module: str) -> bool:
    """Whether adapter_config.json's target_modules covers `module`, as PEFT matches them (a regex string
    must match the whole name; a list names the last parts; `all-linear` covers every linear layer)."""
    targets = config.get("target_modules")
    if targets is None or targets == "all-linear":
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module == t or module.endswith(f".{t}") for t in targets)


def lora_biases(tensors: dict[str, Any]) -> dict[str, Any]:
    """{base bias name: lora_B bias} of an adapter trained with lora_bias=True."""
    suffix = ".lora_B.bias"
    return {f"{key[len(PREFIX) : -len(suffix)]}.bias": value for key, value in tensors.items() if key.endswith(suffix)}


def lora_pairs(tensors: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{base weight name: (A, B)} for every LoRA pair, e.g. "model.layers.0.mlp.up_proj.weight"."""
    pairs = {}
    for key, value in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key[len(PREFIX) : -len(".lora_A.weight")]
            pairs[f"{module}.weight"] = (value, tensors[f"{PREFIX}{module}.lora_B.weight"])
    return pairs


def full_tensors(tensors: dict[str, Any]) -> dict[str, Any]:
    """{base weight name: tensor} for modules trained in full (modules_to_save).

    When the vocabulary was resized PEFT also saves whole embedding layers: `X.modules_to_save.weight`
    (the trained copy, which wins), `X.original_module.weight` (ignored) and `X.weight`.
    """
    full: dict[str, Any] = {}
    for key, value in tensors.items():
        if "lora_" in key or not key.startswith(PREFIX) or ".original_module." in key:
            continue
        name = key[len(PREFIX) :]
        if ".modules_to_save." in name:
            full[name.replace(".modules_to_save", "")] = value
        else:
            full.setdefault(name, value)
    return full
