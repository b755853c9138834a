"""Generated text made ready for scoring: newlines normalised, an echoed prompt, stop strings and
chat or EOS markers removed, whitespace tidied."""

from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<s>",
    "</s>",
    "<pad>",
    "<unk>",
)


def postprocess_text(
    text: str,
    *,
    prompt: str | None = None,
    stop_strings: Sequence[str] = (),
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
) -> str:
    """Clean one generated answer before scoring.

    In order: normalise newlines (CRLF/CR to LF), drop an echoed `prompt` at the start (also when
    the echo lacks the prompt's special tokens), cut at the first of `stop_strings`, remove
    `special_tokens` (default: common chat and EOS markers; pass `tokenizer.all_special_tokens`
    for a given model), strip trailing spaces on each line, collapse runs of blank lines, and
    strip surrounding whitespace.
    """
    text = _normalise_newlines(text)
    if prompt:
        text = _drop_echo(text, _normalise_newlines(prompt), special_tokens)
    cuts = [text.find(stop) for stop in stop_strings if stop and stop in text]
    if cuts:
        text = text[: min(cuts)]
    text = _remove_all(text, special_tokens)
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _remove_all(text: str, pieces: Sequence[str]) -> str:
    for piece in pieces:
        if piece:
            text = text.replace(piece, "")
    return text


def _drop_echo(text: str, prompt: str, special_tokens: Sequence[str]) -> str:
    stripped = text.lstrip()
    if stripped.startswith(prompt.strip()):
        return stripped[len(prompt.strip()) :]
    plain_text, plain_prompt = _remove_all(stripped, special_tokens), _remove_all(prompt, special_tokens).strip()
    if plain_prompt and plain_text.lstrip().startswith(plain_prompt):
        return plain_text.lstrip()[len(plain_prompt) :]
    return text
