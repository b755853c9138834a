"""Prompts and token ids: one builder for training and for generation.

A prompt is the model's chat template with a system and a user message (when the tokenizer has a
template), else a plain text `system / user text / answer prefix`. Training examples are the prompt
ids followed by the answer ids; labels are -100 on the prompt, so the loss falls on the answer only.
With a chat template the answer is rendered as the template renders an assistant turn, and the
completion is what it adds after the prompt (as TRL does for prompt-completion data): the answer and
the template's own end of turn (`<|im_end|>`, Gemma's `<end_of_turn>`, Llama 3's `<|eot_id|>`, which
is not its tokenizer's EOS), so the model learns to end a turn the way the template ends it. A
plain prompt's answer ends with EOS. An example that does not fit `max_seq_length` loses context
tokens from the end of the context, never answer tokens; if even the question alone does not fit,
it is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bioqa.data.labels import target_text
from bioqa.data.splits import Example
from bioqa.errors import InputError, option

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


ANSWER_MARKER = "Xq7ANSWERq7X"  # stands for the answer while the template renders an assistant turn


@dataclass(frozen=True)
class PromptFormat:
    chat: bool
    system_prompt: str
    question_template: str
    context_template: str
    answer_prefix: str
    answer_before: str = ""  # chat: what the template writes between the prompt and the answer
    answer_after: str = ""  # chat: what it writes after the answer, up to its end-of-turn token
    max_token_chars: int = 0  # the most characters one token stands for (0: unknown, texts are not cut)

    def char_budget(self, tokens: int) -> int | None:
        """A text longer than this many characters has more than `tokens` tokens (None: unknown)."""
        return max(tokens, 0) * self.max_token_chars if self.max_token_chars else None


def prompt_format(tokenizer: PreTrainedTokenizerBase, args: Any) -> PromptFormat:
    """The prompt style for this tokenizer and `PromptArguments`."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if args.use_chat_template == "yes" and not has_template:
        raise InputError(f"{option('use_chat_template')} yes, but the tokenizer has no chat template; use auto or no")
    chat = has_template if args.use_chat_template == "auto" else args.use_chat_template == "yes"
    for name, template in (("question_template", args.question_template), ("context_template", args.context_template)):
        try:
            template.format(question="q", context="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(
                f"{option(name)} {template!r} is not a valid template ({exc}); use {{question}} and {{context}}"
            ) from None
    before, after = chat_answer_frame(tokenizer) if chat else ("", "")
    return PromptFormat(
        chat,
        args.system_prompt,
        args.question_template,
        args.context_template,
        args.answer_prefix,
        before,
        after,
        longest_token_chars(tokenizer),
    )


def longest_token_chars(tokenizer: PreTrainedTokenizerBase) -> int:
    """An upper bound on the characters of text one token stands for: the longest vocabulary entry (byte-level
    BPE writes a character as 1 to 4 entry characters, so its entries are never shorter than their text).
    It bounds the text worth tokenising: a 42 MB context costs the tokens that can fit, not 8 GB."""
    return max(map(len, tokenizer.get_vocab()), default=0)


def chat_answer_frame(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """What the chat template writes around an assistant answer after the generation prompt: (before, after).

    `after` is cut after its end-of-turn token (ChatML's and Gemma's newline after it is never generated:
    generation stops at that token). A template whose full conversation does not start with its generation
    prompt cannot be split this way; the answer then ends with the tokenizer's EOS.
    """
    user = [{"role": "user", "content": "Q"}]
    prompt = _render(tokenizer, user, generation_prompt=True)
    full = _render(tokenizer, user + [{"role": "assistant", "content": ANSWER_MARKER}], generation_prompt=False)
    if not full.startswith(prompt) or ANSWER_MARKER not in full[len(prompt) :]:
        return "", tokenizer.eos_token
    before, after = full[len(prompt) :].split(ANSWER_MARKER, 1)
    return before, after.rstrip() or tokenizer.eos_token


def turn_end_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The token a chat template ends an assistant turn with (None without a template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    ids = tokenizer(chat_answer_frame(tokenizer)[1], add_special_tokens=False)["input_ids"]
    return ids[0] if ids else None


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception:  # templates without a system role (e.g. Gemma) raise a TemplateError
        if messages[0]["role"] != "system":
            raise
        merged = [{"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}, *messages[2:]]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=generation_prompt)


def user_text(fmt: PromptFormat, question: str, context: str) -> str:
    template = fmt.context_template if context else fmt.question_template
    return template.format(question=question, context=context)


def prompt_text(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, context: str) -> str:
    """Everything before the answer: the text the model continues at generation time."""
    user = user_text(fmt, question, context)
    if not fmt.chat:
        return (f"{fmt.system_prompt}\n\n" if fmt.system_prompt else "") + user + fmt.answer_prefix
    messages = [{"role": "user", "content": user}]
    if fmt.system_prompt:
        messages.insert(0, {"role": "system", "content": fmt.system_prompt})
    return _render(tokenizer, messages, generation_prompt=True)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, context: str) -> list[int]:
    # A chat template writes its own special tokens (BOS included); a plain prompt gets the tokenizer's.
    return tokenizer(prompt_text(tokenizer, fmt, question, context), add_special_tokens=not fmt.chat)["input_ids"]


def label_continuations(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, labels: tuple[str, ...], target: str
) -> dict[str, list[int]]:
    """The ids each label's answer starts with, as training writes it (`target_text`: "yes", or "Yes." before
    the answer); log-likelihood scoring compares them after the prompt. Without a label target, the label."""
    starts = {label: target_text(target, label, "").strip() if target != "answer" else label for label in labels}
    if fmt.chat:
        return {
            label: tokenizer(fmt.answer_before + text, add_special_tokens=False)["input_ids"]
            for label, text in starts.items()
        }
    return {label: tokenizer(" " + text, add_special_tokens=False)["input_ids"] for label, text in starts.items()}


def answer_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, answer: str) -> list[int]:
    """The completion's ids: the answer as the chat template frames it, ending with the template's end of
    turn; after a plain "Answer:", a space (as the model would generate it), the answer and EOS."""
    if fmt.chat:
        return tokenizer(fmt.answer_before + answer + fmt.answer_after, add_special_tokens=False)["input_ids"]
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def fit_prompt(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, context: str, budget: int
) -> tuple[list[int] | None, bool]:
    """Prompt ids of at most `budget` tokens, cutting the context's end if needed.

    Returns (ids, truncated); ids is None when even the prompt without context is too long.
    Text beyond fmt.char_budget(budget) characters holds only tokens that cannot fit: it is dropped unread.
    """
    limit = fmt.char_budget(budget)
    if limit is not None and len(question) > limit:
        return None, False
    if limit is not None and len(context) > limit:
        context = context[:limit]
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


def encode_for_training(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, max_seq_length: int
) -> tuple[dict[str, list[int]] | None, bool]:
    """input_ids / attention_mask / labels for one example; (None, False) if it cannot fit."""
    target = example.get("target", example["answer"])  # what the model learns to write; the answer is the reference
    limit = fmt.char_budget(max_seq_length)
    if limit is not None and len(target) > limit:  # more tokens than fit: never tokenised
        return None, False
    answer = answer_ids(tokenizer, fmt, target)
    prompt, truncated = fit_prompt(
        tokenizer, fmt, example["question"], example["context"], max_seq_length - len(answer)
    )
    if prompt is None:
        return None, False
    input_ids = prompt + answer
    features = {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt) + answer,
    }
    return features, truncated


# A split at least this large shows a progress bar while it is tokenised (200,000 examples take minutes on a CPU).
PROGRESS_FROM = 10_000


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    counts: dict[str, int],
    name: str = "examples",
) -> Iterator[dict[str, list[int]]]:
    """The features of each example that fits, one at a time (a caller can store them compactly as they come);
    counts the truncated and dropped examples in `counts`."""
    from tqdm.auto import tqdm

    counts.update(truncated=0, dropped=0)
    shown = tqdm(examples, desc=f"tokenising {name}", unit=" examples", disable=len(examples) < PROGRESS_FROM)
    for example in shown:
        encoded, truncated = encode_for_training(tokenizer, fmt, example, max_seq_length)
        if encoded is None:
            counts["dropped"] += 1
            continue
        counts["truncated"] += truncated
        yield encoded


def encode_dataset(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    name: str = "examples",
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Encode every example; return the features and counts of truncated and dropped examples."""
    counts: dict[str, int] = {}
    return list(encode_examples(tokenizer, fmt, examples, max_seq_length, counts, name)), counts
