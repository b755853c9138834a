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

A conversation (`bioqa.data.conversations`) is rendered the same way, turn by turn: the text the template writes
before each earlier answer, that answer as an answer is written above (trained on with assistant_loss all), and
so on up to the generation prompt of the last user turn. Each piece is tokenised on its own, in training and in
generation alike, so the prompt a model answers is exactly the prefix it was trained on. A conversation too long
for `max_seq_length` loses its oldest exchanges (a user turn and its answer) first, never the last one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from bioqa.data.labels import target_text
from bioqa.data.splits import Example
from bioqa.errors import InputError, option

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
log = logging.getLogger("bioqa")


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


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, context: str, system: str | None = None
) -> str:
    """Everything before the answer: the text the model continues at generation time (`system`: an example's own
    system prompt instead of the format's)."""
    system = fmt.system_prompt if system is None else system
    user = user_text(fmt, question, context)
    if not fmt.chat:
        return (f"{system}\n\n" if system else "") + user + fmt.answer_prefix
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return _render(tokenizer, messages, generation_prompt=True)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, question: str, context: str, system: str | None = None
) -> list[int]:
    # A chat template writes its own special tokens (BOS included); a plain prompt gets the tokenizer's.
    text = prompt_text(tokenizer, fmt, question, context, system)
    return tokenizer(text, add_special_tokens=not fmt.chat)["input_ids"]


Segments = list[tuple[list[int], bool]]  # token pieces of a prompt, each True where it is an earlier answer


class Fitted(NamedTuple):
    """A prompt cut to fit: its segments (None: it cannot fit), whether its context was cut, and how many of a
    conversation's oldest exchanges were left out."""

    segments: Segments | None
    truncated: bool = False
    dropped_exchanges: int = 0

    @property
    def ids(self) -> list[int] | None:
        return None if self.segments is None else [token for ids, _ in self.segments for token in ids]


def conversation_segments(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, history: list[dict[str, str]]
) -> Segments:
    """The prompt of `example` after the earlier turns `history`, as segments: the text before each earlier answer,
    the answer (marked True) as answer_ids writes it, and the text up to the last answer."""
    system = example.get("system", fmt.system_prompt)
    users = [turn["content"] for turn in history[0::2]] + [example["question"]]  # a conversation's own words
    answers = [turn["content"] for turn in history[1::2]]
    pieces = chat_pieces(tokenizer, fmt, system, users, answers) if fmt.chat else plain_pieces(fmt, system, users)
    if pieces is None:  # a template that renders earlier turns apart from how it renders a last one
        messages = [m for user, answer in zip(users, answers + [None]) for m in _exchange(user, answer)]
        text = _render(tokenizer, ([{"role": "system", "content": system}] if system else []) + messages, True)
        return [(tokenizer(text, add_special_tokens=False)["input_ids"], False)]
    segments: Segments = []
    for index, text in enumerate(pieces):
        segments.append((tokenizer(text, add_special_tokens=index == 0 and not fmt.chat)["input_ids"], False))
        if index < len(answers):
            segments.append((answer_ids(tokenizer, fmt, answers[index]), True))
    return segments


def _exchange(user: str, answer: str | None) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}] + ([{"role": "assistant", "content": answer}] if answer else [])


def chat_pieces(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, system: str, users: list[str], answers: list[str]
) -> list[str] | None:
    """The text the chat template writes before each answer and before the last one's generation, or None if a
    longer conversation does not begin with the text of a shorter one (then nothing can be cut at turns)."""
    messages = [{"role": "system", "content": system}] if system else []
    written, pieces = "", []
    for index, user in enumerate(users):
        messages.append({"role": "user", "content": user})
        rendered = _render(tokenizer, messages, generation_prompt=True)
        if not rendered.startswith(written):
            _warn_unsplittable(tokenizer.chat_template)
            return None
        pieces.append(rendered[len(written) :])
        if index < len(answers):
            written = rendered + fmt.answer_before + answers[index] + fmt.answer_after
            messages.append({"role": "assistant", "content": answers[index]})
    return pieces


@lru_cache(maxsize=4)
def _warn_unsplittable(template: str) -> None:
    log.warning(
        "the chat template writes a conversation's earlier turns apart from how it writes them as the last turn: "
        "conversations are trained on their last answer only (as %s last)",
        option("assistant_loss"),
    )


def plain_pieces(fmt: PromptFormat, system: str, users: list[str]) -> list[str]:
    """Without a template: the system prompt, then each user turn and the answer prefix, an empty line between an
    answer and the next turn."""
    head = f"{system}\n\n" if system else ""
    return [(head if index == 0 else "\n\n") + user + fmt.answer_prefix for index, user in enumerate(users)]


def label_texts(fmt: PromptFormat, labels: tuple[str, ...], target: str) -> dict[str, str]:
    """The text each label's answer starts with after the prompt, as training writes it (`target_text`: "yes", or
    "Yes." before the answer; after a chat template's answer frame, or a space after a plain prompt). Without a
    label target, the label."""
    starts = {label: target_text(target, label, "").strip() if target != "answer" else label for label in labels}
    return {label: (fmt.answer_before if fmt.chat else " ") + text for label, text in starts.items()}


def label_continuations(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, labels: tuple[str, ...], target: str
) -> dict[str, list[int]]:
    """The ids of each label's `label_texts`: log-likelihood scoring compares them after the prompt."""
    texts = label_texts(fmt, labels, target)
    return {label: tokenizer(text, add_special_tokens=False)["input_ids"] for label, text in texts.items()}


def answer_ids(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, answer: str) -> list[int]:
    """The completion's ids: the answer as the chat template frames it, ending with the template's end of
    turn; after a plain "Answer:", a space (as the model would generate it), the answer and EOS."""
    if fmt.chat:
        return tokenizer(fmt.answer_before + answer + fmt.answer_after, add_special_tokens=False)["input_ids"]
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def fit_prompt(tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, budget: int) -> Fitted:
    """The prompt of `example` in at most `budget` tokens: a conversation (its turns verbatim) loses its oldest
    exchanges first, a question (written with the question and context templates) its context's end. Text beyond
    fmt.char_budget(budget) characters holds only tokens that cannot fit: it is dropped unread."""
    if "history" not in example:  # a question of field records (or Alpaca's)
        ids, truncated = fit_question(tokenizer, fmt, example, budget)
        return Fitted(None if ids is None else [(ids, False)], truncated)
    history, dropped, limit = list(example["history"]), 0, fmt.char_budget(budget)
    if limit is not None and len(example["question"]) > limit:
        return Fitted(None)
    while history and limit is not None and sum(len(turn["content"]) for turn in history) > limit:
        history, dropped = history[2:], dropped + 1
    while True:
        segments = conversation_segments(tokenizer, fmt, example, history)
        if sum(len(ids) for ids, _ in segments) <= budget:
            return Fitted(segments, False, dropped)
        if not history:
            return Fitted(None, False, dropped)
        history, dropped = history[2:], dropped + 1


def fit_question(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, budget: int
) -> tuple[list[int] | None, bool]:
    """Prompt ids of one question in at most `budget` tokens, cutting the context's end if needed; (ids, truncated),
    ids None when even the prompt without context is too long."""
    question, context, system = example["question"], example["context"], example.get("system")
    limit = fmt.char_budget(budget)
    if limit is not None and len(question) > limit:
        return None, False
    if limit is not None and len(context) > limit:
        context = context[:limit]
    ids = prompt_ids(tokenizer, fmt, question, context, system)
    if len(ids) <= budget:
        return ids, False
    if not context:
        return None, False
    context_tokens = tokenizer(context, add_special_tokens=False)["input_ids"]
    low, high, best = 0, len(context_tokens) - 1, None
    while low <= high:  # longest context prefix whose prompt fits (prompt length grows with it)
        middle = (low + high) // 2
        cut = tokenizer.decode(context_tokens[:middle]).strip()
        candidate = prompt_ids(tokenizer, fmt, question, cut, system)
        if len(candidate) <= budget:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best, best is not None


def encoded(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, max_seq_length: int, all_turns: bool
) -> tuple[dict[str, list[int]] | None, Fitted]:
    """input_ids / attention_mask / labels for one example (None if it cannot fit) and how its prompt was fitted.
    Labels are -100 but on the answer, and with `all_turns` on a conversation's earlier answers too."""
    target = example.get("target", example["answer"])  # what the model learns to write; the answer is the reference
    limit = fmt.char_budget(max_seq_length)
    if limit is not None and len(target) > limit:  # more tokens than fit: never tokenised
        return None, Fitted(None)
    answer = answer_ids(tokenizer, fmt, target)
    fitted = fit_prompt(tokenizer, fmt, example, max_seq_length - len(answer))
    if fitted.segments is None:
        return None, fitted
    labels = [token if trained and all_turns else IGNORE_INDEX for ids, trained in fitted.segments for token in ids]
    input_ids = fitted.ids + answer
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels + answer}, fitted


def encode_for_training(
    tokenizer: PreTrainedTokenizerBase, fmt: PromptFormat, example: Example, max_seq_length: int, all_turns: bool = True
) -> tuple[dict[str, list[int]] | None, bool]:
    """input_ids / attention_mask / labels for one example and whether its context was cut; (None, False) if it
    cannot fit."""
    features, fitted = encoded(tokenizer, fmt, example, max_seq_length, all_turns)
    return features, fitted.truncated


# A split at least this large shows a progress bar while it is tokenised (200,000 examples take minutes on a CPU).
PROGRESS_FROM = 10_000


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    counts: dict[str, int],
    name: str = "examples",
    all_turns: bool = True,
) -> Iterator[dict[str, list[int]]]:
    """The features of each example that fits, one at a time (a caller can store them compactly as they come);
    counts the truncated, dropped and shortened (conversations that lost exchanges) examples in `counts`."""
    from tqdm.auto import tqdm

    counts.update(truncated=0, dropped=0, shortened=0, dropped_exchanges=0)
    shown = tqdm(examples, desc=f"tokenising {name}", unit=" examples", disable=len(examples) < PROGRESS_FROM)
    for example in shown:
        features, fitted = encoded(tokenizer, fmt, example, max_seq_length, all_turns)
        counts["shortened"] += fitted.dropped_exchanges > 0
        counts["dropped_exchanges"] += fitted.dropped_exchanges
        if features is None:
            counts["dropped"] += 1
            continue
        counts["truncated"] += fitted.truncated
        yield features


def encode_dataset(
    tokenizer: PreTrainedTokenizerBase,
    fmt: PromptFormat,
    examples: list[Example],
    max_seq_length: int,
    name: str = "examples",
    all_turns: bool = True,
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Encode every example; return the features and counts of truncated, dropped and shortened examples."""
    counts: dict[str, int] = {}
    return list(encode_examples(tokenizer, fmt, examples, max_seq_length, counts, name, all_turns)), counts
