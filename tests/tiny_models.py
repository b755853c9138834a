"""Tiny Llama-style models and QA data, built offline for tests (no Hub access needed).

The tokenizer, the 2-layer Llama and the QA rows are the library's own (`bioqa.smoke`, which `bioqa-doctor`
trains too); here are the variants the tests need beside them: yes/no rows, a LoRA-wrapped model, bases and
adapters saved with particular shapes, tokenizers in the chat-template styles of Gemma and Llama 3.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from bioqa.smoke import FACTS, build_model, build_tokenizer, qa_rows, save_tiny_model

# the library's builders, re-exported: the tests import every builder from this module
__all__ = ["FACTS", "build_model", "build_tokenizer", "qa_rows", "save_tiny_model"]


def yes_no_rows(n: int = 40, seed: int = 0) -> list[dict]:
    """Yes/no questions on the same facts: "Does insulin lower blood glucose?" is yes, another drug's action no."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        drug, action = FACTS[i % len(FACTS)]
        claimed = action if i % 2 == 0 else FACTS[(i + 7) % len(FACTS)][1]
        rows.append(
            {
                "id": f"y{i}",
                "question": f"Does {drug} do this: {claimed}? (case {i})",
                "answer": f"{drug.capitalize()} {action}.",
                "decision": "yes" if claimed == action else "no",
            }
        )
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def lora_model(tokenizer, seed: int = 5, dtype: str = "float32", **config_extra):
    """build_model in `dtype` with a random (not zero) LoRA r 4 on all linear layers; PEFT keeps it float32."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    return get_peft_model(build_model(tokenizer, seed=seed, **config_extra).to(getattr(torch, dtype)), config)


def make_base(
    path: Path, tie: bool = True, shard: str | None = None, hidden: int = 32, init_range: float = 0.5, **config_extra
) -> Path:
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, tie=tie, init_range=init_range, **config_extra)
    if hidden != 32:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "hidden_size": hidden}))
    model.save_pretrained(path, max_shard_size=shard) if shard else model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_adapter(base: Path, path: Path, add_token: bool = False, **lora) -> Path:
    """An adapter with non-zero LoRA weights (a fresh default adapter would change nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if add_token:
        tokenizer.add_tokens(["<gene>"])
        model.resize_token_embeddings(len(tokenizer))
    config = LoraConfig(
        **{
            "r": 4,
            "lora_alpha": 8,
            "target_modules": "all-linear",
            "init_lora_weights": False,
            "task_type": "CAUSAL_LM",
            **lora,
        }
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # trained modules_to_save copies differ from the base
        for name, parameter in peft_model.named_parameters():
            if "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    peft_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "run_manifest.json").write_text(json.dumps({"seed": 7}))
    return path


# Chat templates whose end of turn is not the tokenizer's EOS, written after the published ones.
TEMPLATE_STYLES = {
    "gemma": {
        "template": (
            "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
            "{{ raise_exception('System role not supported') }}{% endif %}"
            "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
            "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
        ),
        "specials": ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        "bos": "<bos>",
        "eos": "<eos>",
        "turn_end": "<end_of_turn>",
    },
    "llama3": {
        "template": (
            "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
            "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        ),
        "specials": [
            "<pad>",
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",
        "turn_end": "<|eot_id|>",
    },
}


def build_styled_tokenizer(style: str):
    """A byte-level BPE tokenizer with the special tokens and chat template of `style` (gemma, llama3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = TEMPLATE_STYLES[style]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=spec["specials"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(
        [f"{r['question']} {r['answer']}" for r in qa_rows(60)] + ["user model assistant"], trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        additional_special_tokens=spec["specials"][3:],
    )
    tokenizer.chat_template = spec["template"]
    return tokenizer
