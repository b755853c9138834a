"""Prompts and token ids: one builder for training and for generation.

A prompt is the model's chat template with a system and a user message (when the tokenizer has a
template), else a plain text `system / user text / answer prefix`. Training examples are the prompt
ids followed by the answer ids and EOS; labels are -100 on the prompt, so the loss falls on the
answer only. An example that does not fit `max_seq_length` loses context tokens from the end of
the context, never answer tokens; if even the question alone does not fit, it is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bioqa.runfiles import UsageError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptFormat:
    chat: bool
    system_prompt: str
    question_template: str
    context_template: str
    answer_prefix: str


def prompt_format(tokenizer: Any, args: Any) -> PromptFormat:
    """The prompt style for this tokenizer and `PromptArguments`."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if args.use_chat_template == "yes" and not has_template:
        raise UsageError("--use_chat_template yes, but the tokenizer has no chat template; use auto or no")
    chat = has_template if args.use_chat_template == "auto" else args.use_chat_template == "yes"
    for name, template in (("question_template", args.question_template), ("context_template", args.context_template)):
        try:
            template.format(question="q", context="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"--{name} {template!r} is not a valid template ({exc}); use {{question}} and {{context}}") from None
    return PromptFormat(chat, args.system_prompt, args.question_template, args.context_template, args.answer_prefix)


def user_text(fmt: PromptFormat, question: str, context: str) -> str:
    template = fmt.context_template if context else fmt.question_template
    return template.format(question=question, context=context)


def prompt_text(tokenizer: Any, fmt: PromptFormat, question: str, context: str) -> str:
    """Everything before the answer: the text the model continues at generation time."""
    user = user_text(fmt, question, context)
    if not fmt.chat:
        return (f"{fmt.system_prompt}\n\n" if fmt.system_prompt else "") + user + fmt.answer_prefix
    messages = [{"role": "user", "content": user}]
    if fmt.system_prompt:
        messages.insert(0, {"role": "system", "content": fmt.system_prompt})
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates without a system role (e.g. Gemma) raise a TemplateError
        merged = [{"role": "user", "content": f"{fmt.system_prompt}\n\n{user}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, fmt: PromptFormat, question: str, context: str) -> list[int]:
    # A chat template writes its own special tokens (BOS included); a plain prompt gets the tokenizer's.
    return tokenizer(prompt_text(tokenizer, fmt, question, context), add_special_tokens=not fmt.chat)["input_ids"]


def answer_ids(tokenizer: Any, fmt: PromptFormat, answer: str) -> list[int]:
    # After a plain "Answer:" the answer starts with a space, as the model would generate it.
    text = answer if fmt.chat else " " + answer
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def fit_prompt(tokenizer: Any, fmt: PromptFormat, question: str, context: str, budget: int) -> tuple[list[int] | None, bool]:
    """Prompt ids of at most `budget` tokens, cutting the context's end if needed.

    Returns (ids, truncated); ids is None when even the prompt without context is too long.
    """
    ids = prompt_ids(tokenizer, fmt, question, context)
    if len(ids) <= budget:
        return ids, False
    if not context:
        return None, False
    context_tokens = tokenizer(context, add_special_tokens=False)["input_ids"]
    low, high, best = 0, len(context_tokens) - 1, None
    while low <= high:  # longest context prefix whose prompt fits (prompt length grows with it)
        middle = (low + high) // 2
        candidate = prompt_ids(tokenizer, fmt, question, tokenizer.decode(context_tokens[:middle]).strip())
        if len(candidate) <= budget:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best, best is not None


def encode_for_training(tokenizer: Any, fmt: PromptFormat, example: dict, max_seq_length: int) -> tuple[dict | None, bool]:
    """input_ids / attention_mask / labels for one example; (None, False) if it cannot fit."""
    answer = answer_ids(tokenizer, fmt, example["answer"])
    prompt, truncated = fit_prompt(tokenizer, fmt, example["question"], example["context"], max_seq_length - len(answer))
    if prompt is None:
        return None, False
    input_ids = prompt + answer
    features = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
                "labels": [IGNORE_INDEX] * len(prompt) + answer}
    return features, truncated


def encode_dataset(tokenizer: Any, fmt: PromptFormat, examples: list[dict], max_seq_length: int) -> tuple[list[dict], dict[str, int]]:
    """Encode every example; return the features and counts of truncated and dropped examples."""
    features, counts = [], {"truncated": 0, "dropped": 0}
    for example in examples:
        encoded, truncated = encode_for_training(tokenizer, fmt, example, max_seq_length)
        if encoded is None:
            counts["dropped"] += 1
            continue
        counts["truncated"] += truncated
        features.append(encoded)
    return features, counts
