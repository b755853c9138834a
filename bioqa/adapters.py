"""A saved LoRA adapter folder: what it says about itself, read without loading any model.

The base model comes from the adapter's own `adapter_config.json` (`base_model_name_or_path`),
the scale of each LoRA pair from its r / alpha (with rank and alpha patterns, and rsLoRA), and the
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

from bioqa.runfiles import UsageError

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


def read_adapter(path: str | Path) -> Adapter:
    """The adapter folder at `path`; UsageError if it is missing or is not a LoRA adapter."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"--adapter_dir {path} does not exist; give the output folder of a training run")
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise UsageError(f"--adapter_dir {path} is not an adapter: it has no adapter_config.json; give the "
                         "folder load_models.py wrote (or one of its checkpoint-* folders)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_file} is not valid JSON ({exc}); the adapter folder is damaged") from None
    if config.get("peft_type") != "LORA":
        raise UsageError(f"{path} holds a {config.get('peft_type')} adapter; this script merges LoRA adapters only")
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        raise UsageError(f"{path} has adapter_config.json but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    return Adapter(path, config)


def adapter_tensors(adapter: Adapter) -> dict[str, Any]:
    """The adapter's tensors, keyed as saved; a damaged file is a UsageError."""
    try:
        if adapter.weights_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(adapter.weights_file)
        import torch

        return torch.load(adapter.weights_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors / torch raise several types for a corrupt file
        raise UsageError(f"cannot read {adapter.weights_file}: {' '.join(str(exc).split())[:200]}; "
                         "the adapter file is damaged, copy it again") from None


def lora_pairs(tensors: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{base weight name: (A, B)} for every LoRA pair, e.g. "model.layers.0.mlp.up_proj.weight"."""
    pairs = {}
    for key, value in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key[len(PREFIX):-len(".lora_A.weight")]
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
        name = key[len(PREFIX):]
        if ".modules_to_save." in name:
            full[name.replace(".modules_to_save", "")] = value
        else:
            full.setdefault(name, value)
    return full
