"""Base model, tokenizer and LoRA adapter: loading with clear errors, and the LoRA set-up.

Everything that can be checked without weights is checked first: the model's config is read and
an empty (meta-device) copy of the model lists its linear layers, so target modules that match
nothing fail before gigabytes load.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from bioqa.devices import DeviceChoice, four_bit_compute_dtype
from bioqa.errors import InputError, option, short
from bioqa.io.paths import DEFAULT_MODEL, local_default_model, looked_in

log = logging.getLogger("bioqa")


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers (False at once under HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_model_name(name: str) -> str:
    """The default model's Hub id, or offline its local copy from `make model` (saying so)."""
    if name != DEFAULT_MODEL or Path(name).exists() or hub_reachable():
        return name
    local = local_default_model()  # written by `make model`
    if (local / "config.json").is_file():
        log.info(
            "the Hugging Face Hub is unreachable: using the local copy of %s in %s (dequantized from 4-bit "
            "Q4_1; see its PROVENANCE.txt)",
            name,
            local,
        )
        return str(local)
    where = looked_in(local, "BIOQA_MODELS_DIR", f"models/{local.name}")
    raise InputError(
        f"{name} cannot be downloaded (the Hugging Face Hub is unreachable) and there is no local copy in {where}; "
        f"run `make model`, or pass a local folder with {option('model_name_or_path')}"
    )


def load_error(kind: str, name: str, exc: Exception, setting: str = "model_name_or_path") -> InputError:
    """One line for a model or tokenizer that did not load: a local folder that is damaged, or a Hub id."""
    reason = short(str(exc), 240)
    if Path(name).exists():
        return InputError(
            f"cannot load the {kind} from {name}: {reason}; check that the folder holds a "
            f"Hugging Face {kind} (config.json and weights / tokenizer files), or copy it again"
        )
    return InputError(
        f"cannot load the {kind} {name!r}: it is not a local folder and the Hugging Face Hub did not "
        f"provide it ({reason}); offline, pass a local folder with {option(setting)}"
    )


def load_config(model_args: Any):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise load_error("model", model_args.model_name_or_path, exc) from None


def load_tokenizer(model_args: Any):
    """The tokenizer, padding on the right for training, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    name = model_args.tokenizer_name or model_args.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise load_error("tokenizer", name, exc) from None
    if tokenizer.eos_token_id is None:
        raise InputError(
            f"the tokenizer of {name} has no EOS token, so answers could not end; choose another tokenizer"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padded positions are masked out of attention and loss
    tokenizer.padding_side = "right"
    return tokenizer


def linear_module_names(config: Any) -> list[str]:
    """Leaf names of the model's linear layers (q_proj, up_proj, ...), from an empty meta-device copy."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names)


def check_target_modules(config: Any, targets: list[str]) -> str | None:
    """A problem line if a LoRA target module matches no linear layer of the model, else None."""
    if targets == ["all-linear"]:
        return None
    available = linear_module_names(config)
    missing = [t for t in targets if t not in available]
    if missing:
        return (
            f"{option('lora_target_modules')} {' '.join(missing)} match no linear layer of this model; "
            f"candidates: {' '.join(available)}"
        )
    return None


def lora_rank_problem(config: Any, rank: int) -> str | None:
    """A problem line if the LoRA rank exceeds the model's hidden size: every decoder linear layer has the hidden
    size on one side, and an update B @ A cannot have a higher rank than its layer (only more memory)."""
    hidden = getattr(config, "hidden_size", None)
    if isinstance(hidden, int) and rank > hidden:
        return f"{option('lora_r')} {rank} exceeds the model's hidden size {hidden}; choose at most {hidden}"
    return None


def load_model(model_args: Any, choice: DeviceChoice):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, choice.weights_dtype),
        "trust_remote_code": model_args.trust_remote_code,
    }
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config(choice)
    try:
        return AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:  # a damaged weights file: SafetensorError
        raise load_error("model", model_args.model_name_or_path, exc) from None


def _four_bit_config(choice: DeviceChoice):
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401  (optional extra, CUDA only)
    except ImportError:
        raise InputError(
            f"{option('load_in_4bit')} needs bitsandbytes; pip install -e '.[gpu]' (bitsandbytes 0.50.2, CUDA only)"
        ) from None
    compute = getattr(torch, four_bit_compute_dtype(choice.precision))  # generation computes in it too
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True
    )


def load_adapter(model: Any, adapter: str):
    """An existing LoRA adapter on top of `model`, for prediction (not trainable)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise InputError(
            f"cannot load the adapter {adapter!r}: {short(str(exc), 240)}; give the output "
            "folder of a training run (adapter_config.json + adapter_model.safetensors)"
        ) from None


def apply_lora(model: Any, lora_args: Any, load_in_4bit: bool, activation_checkpointing: bool):
    """Wrap the model with a LoRA adapter (after k-bit preparation for QLoRA) and log its size."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    targets = lora_args.lora_target_modules
    config = LoraConfig(
        r=lora_args.lora_r,
        lora_alpha=lora_args.lora_alpha,
        lora_dropout=lora_args.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        modules_to_save=lora_args.modules_to_save,
        use_rslora=lora_args.use_rslora,
        use_dora=lora_args.use_dora,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:
        raise InputError(f"LoRA set-up failed: {short(str(exc), 300)}; check {option('lora_target_modules')}") from None
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %s trainable parameters of %s (%.3f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model
