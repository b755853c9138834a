"""Base model, tokenizer and peft adapter: loading with clear errors, and the adapter's set-up.

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
from bioqa.train.peft_methods import converted_init

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


def hidden_linear_names(model: Any) -> list[str]:
    """Leaf names of the model's linear layers but its output head: what peft's all-linear adapts."""
    import torch

    head = model.get_output_embeddings()
    return sorted(
        {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
        - ({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is head} if head is not None else set())
    )


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
    """An existing peft adapter on top of `model`, for prediction (not trainable)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=False)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise InputError(
            f"cannot load the adapter {adapter!r}: {short(str(exc), 240)}; give the output "
            "folder of a training run (adapter_config.json + adapter_model.safetensors)"
        ) from None


def apply_adapter(model: Any, config: Any, load_in_4bit: bool, activation_checkpointing: bool):
    """Wrap the model with the peft adapter `config` describes (after k-bit preparation for QLoRA) and log its size."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    if getattr(config, "feedforward_modules", 0) is None and config.target_modules == "all-linear":
        # IA3: peft saves all-linear as full module names but its default feedforward_modules as a leaf name,
        # and then refuses to load its own config (not a subset); leaf names on both sides load again
        config.target_modules = hidden_linear_names(model)
    try:
        model = get_peft_model(model, config)
    except (ValueError, TypeError, RuntimeError) as exc:  # peft checks the config against the model here
        raise InputError(
            f"{config.peft_type.value} set-up failed: {short(str(exc), 300)}; check "
            f"{option('lora_target_modules')} and {option('peft_options')}"
        ) from None
    trainable, total = model.get_nb_trainable_parameters()
    kind = config.peft_type.value
    log.info(
        "%s: %s trainable parameters of %s (%.3f%%)",
        ("DoRA" if config.use_dora else "LoRA") if kind == "LORA" else kind,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
    return model


def save_initial_adapter(model: Any, config: Any) -> Any:
    """For an initialisation that changes the base weights (PiSSA, OLoRA): the adapter as initialised, saved in a
    temporary folder (returned; deleted when it is collected), which the final save subtracts to write a plain
    LoRA adapter for the unchanged base. None for every other adapter."""
    import tempfile

    if not converted_init(config):
        return None
    folder = tempfile.TemporaryDirectory(prefix="bioqa-initial-adapter-")
    model.save_pretrained(str(Path(folder.name) / "initial"))
    return folder


def save_converted_adapter(model: Any, folder: str | Path, initial: Any) -> None:
    """Overwrite the adapter saved in `folder` with its conversion to a plain LoRA adapter (rank doubled) that
    applies to the unchanged base; `initial` is what save_initial_adapter returned (None: nothing to do)."""
    if initial is not None:
        model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=str(Path(initial.name) / "initial"))
