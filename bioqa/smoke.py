"""A tiny Llama-style model, its tokenizer and QA examples, built offline from nothing: the smoke run of
`bioqa-doctor` and the test suite's fixtures.

The tokenizer is a byte-level BPE trained here on the QA texts, with ChatML-style special tokens and chat
template (as SmolLM2 and Qwen use); the model is a 2-layer Llama from a config, with random weights scaled so
that a LoRA-only update can fit the data in a few steps.
"""

from __future__ import annotations

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

FACTS = [
    ("insulin", "lowers blood glucose"),
    ("glucagon", "raises blood glucose"),
    ("aspirin", "inhibits cyclooxygenase"),
    ("metformin", "reduces hepatic glucose output"),
    ("warfarin", "antagonises vitamin K"),
    ("penicillin", "blocks bacterial cell wall synthesis"),
    ("heparin", "activates antithrombin"),
    ("furosemide", "blocks the loop of Henle cotransporter"),
    ("atropine", "blocks muscarinic receptors"),
    ("omeprazole", "inhibits the gastric proton pump"),
    ("IL-6", "drives the acute phase response"),
    ("erythropoietin", "stimulates red cell production"),
    ("thyroxine", "raises the metabolic rate"),
    ("cortisol", "raises blood glucose in stress"),
    ("digoxin", "inhibits the sodium potassium pump"),
    ("morphine", "activates mu opioid receptors"),
    ("salbutamol", "relaxes bronchial smooth muscle"),
    ("lisinopril", "inhibits angiotensin converting enzyme"),
    ("statins", "inhibit HMG-CoA reductase"),
    ("vancomycin", "binds cell wall precursors"),
]


def qa_rows(n: int = 40, seed: int = 0, with_context: bool = True) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        drug, action = FACTS[i % len(FACTS)]
        context = (
            f"Pharmacology notes: {drug} {action}. It is used in clinical practice." if with_context and i % 2 else ""
        )
        rows.append(
            {
                "id": f"q{i}",
                "question": f"What does {drug} do? (case {i})",
                "context": context,
                "answer": f"{drug.capitalize()} {action}.",
            }
        )
    rng.shuffle(rows)
    return rows


def build_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"{r['question']} {r['context']} {r['answer']}" for r in qa_rows(200, with_context=True)]
    corpus += ["Question: Context: Answer: You are a biomedical expert. system user assistant"] * 5
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bar would land in the doctor's report
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<|im_end|>" if chat else "<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer, seed: int = 0, tie: bool = True, init_range: float = 0.5, family="llama", **config_extra):
    """A 2-layer Llama (or, with family="mistral", a Mistral: its sliding-window attention) from a config; any
    config field (hidden_size, num_hidden_layers, ...) can be given to build a larger one."""
    import torch
    import transformers

    torch.manual_seed(seed)
    name = {"llama": "Llama", "mistral": "Mistral"}[family]
    shape = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    config = getattr(transformers, f"{name}Config")(
        vocab_size=len(tokenizer),
        # logits with some scale by default, so a LoRA-only update can fit the data
        initializer_range=init_range,
        tie_word_embeddings=tie,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**shape, **config_extra},
    )
    return getattr(transformers, f"{name}ForCausalLM")(config)


def save_tiny_model(path: Path, chat: bool = True, tie: bool = True) -> Path:
    """The tiny model and its tokenizer saved in `path`, as a Hugging Face checkpoint folder."""
    tokenizer = build_tokenizer(chat)
    model = build_model(tokenizer, tie=tie)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
