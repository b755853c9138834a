"""Checks that a merged model is the base plus its adapter, and the tolerances they use.

* Logits from disk: the merged checkpoint is reloaded with `AutoModelForCausalLM.from_pretrained`
  and run on probe prompts next to base + adapter (unmerged, float32): the largest absolute logit
  difference (also relative to the largest logit), the share of positions whose top-1 token agrees,
  and the greedy answers.
* Weight by weight (streaming merges of models too large to load twice): for each merged W',
  W'x is compared with Wx + scale * B(Ax) on random probe vectors x; relative error.

Tolerances (TOLERANCES below) depend on the dtype the merged model is saved in: rounding every
weight to bf16 moves logits by tenths, float32 differs from base + adapter only by summation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bioqa.io.files import parse_jsonl, read_run_config, read_text
from bioqa.merging.adapters import PREFIX, Adapter

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# dtype: (max |logit difference| / max |logit|, min top-1 agreement, max relative weight-probe error).
# Measured on SmolLM2-135M + a random r16 adapter (docs/BENCHMARKS.md): float32 7.9e-6 / 100%,
# float16 5.7e-3 / 100%, bfloat16 0.12 / 94.7%: bf16 keeps 8 bits of mantissa, so its logits move.
TOLERANCES = {
    "float32": (1e-4, 1.0, 1e-5),
    "float16": (2e-2, 0.97, 2e-3),
    "bfloat16": (0.25, 0.90, 1.6e-2),
}
BUILT_IN_PROBES = (
    "What does insulin do to blood glucose?",
    "Which organism causes tuberculosis?",
    "How do beta-blockers lower blood pressure?",
    "What is the first-line drug for type 2 diabetes?",
)
PROBE_VECTORS = 4


@dataclass
class LogitsProbe:
    """What base + adapter (or the merged model) does on the probe prompts."""

    logits: list[Any]  # per prompt: float32 logits (length x vocabulary), on the CPU
    answers: list[list[int]]  # greedy continuation token ids


def probe_model(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], new_tokens: int = 24
) -> LogitsProbe:
    import torch

    from bioqa.generate.generation import GenerationSettings, generate_token_ids

    logits = []
    with torch.inference_mode():
        for ids in prompts:
            tensor = torch.tensor([list(ids)], device=model.device)
            logits.append(model(input_ids=tensor).logits[0].float().cpu())
    # batched as evaluations are (both models see the same padding): one prompt at a time took 4x the steps
    answers = generate_token_ids(model, tokenizer, prompts, GenerationSettings(max_new_tokens=new_tokens))
    return LogitsProbe(logits, answers)


def compare_logits(reference: LogitsProbe, merged: LogitsProbe, dtype: str) -> dict[str, Any]:
    """Figures of the logits check and whether they are within the dtype's tolerance."""
    import torch

    max_diff = max(float((a - b).abs().max()) for a, b in zip(reference.logits, merged.logits))
    relative = max_diff / max(max(float(a.abs().max()) for a in reference.logits), 1e-12)
    agree = torch.cat([(a.argmax(-1) == b.argmax(-1)).float() for a, b in zip(reference.logits, merged.logits)])
    same_answers = sum(a == b for a, b in zip(reference.answers, merged.answers))
    max_tol, min_agreement, _ = TOLERANCES[dtype]
    return {
        "method": "logits of the reloaded checkpoint vs base + adapter",
        "probes": len(reference.logits),
        "max_abs_logit_diff": max_diff,
        "max_relative_logit_diff": relative,
        "top1_agreement": float(agree.mean()),
        "identical_greedy_answers": f"{same_answers}/{len(reference.answers)}",
        "tolerance": {"max_relative_logit_diff": max_tol, "min_top1_agreement": min_agreement},
        "passed": relative <= max_tol and float(agree.mean()) >= min_agreement,
    }


def weight_probe_error(original: Any, merged: Any, delta_fn: Any, generator: Any) -> float:
    """Relative error of merged @ x against original @ x + delta(x) on random probe vectors x."""
    import torch

    x = torch.randn(original.shape[1], PROBE_VECTORS, generator=generator, dtype=torch.float32)
    expected = original.float() @ x + delta_fn(x)
    return float((merged.float() @ x - expected).norm() / expected.norm().clamp(min=1e-12))


def adapted_weights(tensors: dict[str, Any]) -> set[str]:
    """Every base weight a LoRA pair of the adapter's file changes, read from the file's keys here, apart from the
    merge's own reading: the weight-by-weight check must cover each one, whatever the merge made of them."""
    suffix = ".lora_A.weight"
    return {f"{key[len(PREFIX) : -len(suffix)]}.weight" for key in tensors if key.endswith(suffix)}


def weightwise_summary(errors: dict[str, float], dtype: str, adapted: set[str]) -> dict[str, Any]:
    """The probe errors of the merged weights (`errors`), against the tolerance of `dtype`; a weight of `adapted`
    the merge did not change (no error measured) fails the check."""
    tolerance = TOLERANCES[dtype][2]
    worst = max(errors, key=errors.get) if errors else None
    unmerged = sorted(adapted - set(errors))
    return {
        "method": "weight by weight: W'x vs Wx + scale*B(Ax) on random vectors",
        "weights_checked": len(errors),
        "max_relative_error": errors[worst] if worst else 0.0,
        "worst_weight": worst,
        "not_merged": unmerged,
        "tolerance": {"max_relative_error": tolerance},
        "passed": not unmerged and all(error <= tolerance for error in errors.values()),
    }


def probe_prompts(adapter: Adapter, tokenizer: PreTrainedTokenizerBase, count: int = 4) -> list[list[int]]:
    """Questions from the adapter's latest validation predictions if any, else built-in ones, as prompts."""
    from bioqa.data.prompts import prompt_format, prompt_ids
    from bioqa.settings import PromptArguments

    files = sorted(adapter.path.glob("predictions/eval-step-*.jsonl"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    rows = (
        parse_jsonl(read_text(files[-1]), files[-1], "the adapter's predictions are damaged")[:count] if files else []
    )
    questions = [row["question"] for row in rows if isinstance(row.get("question"), str)] or list(
        BUILT_IN_PROBES[:count]
    )
    fmt = prompt_format(tokenizer, PromptArguments(**_prompt_options(adapter)))
    return [prompt_ids(tokenizer, fmt, question, "") for question in questions]


def run_config(adapter: Adapter) -> dict[str, Any]:
    """The options the adapter was trained with (run_config.yaml written by load_models.py), if any."""
    config_file = adapter.path / "run_config.yaml"
    return read_run_config(config_file) if config_file.is_file() else {}


def _prompt_options(adapter: Adapter) -> dict[str, Any]:
    from dataclasses import fields

    from bioqa.settings import PromptArguments

    config = run_config(adapter)
    return {f.name: config[f.name] for f in fields(PromptArguments) if f.name in config}
