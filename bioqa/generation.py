"""Batched greedy generation from prompt token ids: for evaluation, prediction and merge checks.

Prompts are sorted by length and left-padded per batch (decoder-only models continue from the
right end), so batches hold prompts of similar length and little padding; answers come back in
the caller's order. Padding is built here from the ids, so the tokenizer's own padding side (right,
for training) is never changed. With greedy decoding the answers equal one-prompt-at-a-time
generation (tested).

The repetition guards look at the answer only. transformers' own `no_repeat_ngram_size` and
`repetition_penalty` count the prompt too for decoder-only models, so they forbid or penalise
quoting the context: on PubMedQA that cost the fine-tuned model ROUGE-L (docs/BENCHMARKS.md).

On a CPU, attention in a decoding step takes sdpa's own grouped-query path (`grouped_query_sdpa`); in bf16, a model
loaded by the commands attends to one-token queries with matrix products instead (`bioqa.attention`).

`answer_prompts` runs in the settings' dtype, LoRA updates folded into the weights (`bioqa.precision`), so the
same answers and label scores come from the adapter during training and reloaded from its folder (tested).

For questions with a label set, `label_logliks` / `choose_labels` answer without generating: the label
whose first tokens are the most likely after the prompt. `answer_prompts` runs either or both, across
processes (`run_sharded`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from bioqa.postprocess import postprocess_text
from bioqa.precision import computing_in
from bioqa.prompts import turn_end_id

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    batch_size: int = 32  # as --generation_batch_size: the library and the command line agree
    num_beams: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    dtype: str | None = None  # "bfloat16", "float16", "float32": frozen weights are cast to it; None: as they are
    cache: str = "reserved"  # KV cache: reserved (bioqa.kv_cache), dynamic, static, compiled (static + torch.compile)
    fold_lora: bool = True  # LoRA updates folded into copies of their weights while generating (bioqa.precision)
    extra: dict = field(default_factory=dict)  # any other generate() keyword

    def generate_kwargs(self, prompt_width: int) -> dict[str, Any]:
        """generate() keywords for a batch of left-padded prompts `prompt_width` tokens wide."""
        # The library's own guards are switched off, even where the model's generation_config sets them:
        # they count the prompt; the answer-only ones below replace them.
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": False,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "logits_processor": answer_repetition_guards(self, prompt_width),
        }
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        return {**kwargs, **cache_kwargs(self.cache), **self.extra}


def cache_kwargs(cache: str) -> dict[str, Any]:
    """generate() keywords for the KV cache. transformers compiles the decoding step by itself where the cache
    is static and the device is a GPU, so `static` switches that off and `compiled` asks for it on any device.
    `reserved` is a cache object made per batch (`_batch_cache`), so it needs no keyword here."""
    if cache in ("dynamic", "reserved"):
        return {}
    if cache == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    from transformers import CompileConfig

    config = CompileConfig(mode="default")
    config._compile_all_devices = True  # transformers' own switch for compiling off the GPU
    return {"cache_implementation": "static", "compile_config": config}


def answer_repetition_guards(settings: GenerationSettings, prompt_width: int) -> Any:
    """The repetition penalty and n-gram ban, both blind to the first `prompt_width` tokens (the prompt)."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    guards = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        guards.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=prompt_width))
    if settings.no_repeat_ngram_size:
        guards.append(AnswerNoRepeatNGram(settings.no_repeat_ngram_size, prompt_width))
    return guards


class AnswerNoRepeatNGram:
    """transformers' NoRepeatNGramLogitsProcessor over the generated tokens only: no n-gram twice in an answer."""

    def __init__(self, ngram_size: int, prompt_width: int):
        from transformers import NoRepeatNGramLogitsProcessor

        self.ban = NoRepeatNGramLogitsProcessor(ngram_size)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.ban(input_ids[:, self.prompt_width :], scores)


def _left_padded(batch: Sequence[Sequence[int]], pad_id: int, device: Any):
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def generate_token_ids(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    progress: bool = False,
) -> list[list[int]]:
    """New token ids for each prompt (prompt not included), in the order of `prompts`."""
    import torch
    from tqdm.auto import tqdm

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = stop_token_ids(model, tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    outputs: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    starts = range(0, len(order), settings.batch_size)
    try:
        with torch.inference_mode(), grouped_query_sdpa(model.device), contiguous_head_input(model):
            for start in tqdm(starts, desc="generating", disable=not progress, unit="batch"):
                rows = order[start : start + settings.batch_size]
                input_ids, attention_mask = _left_padded([prompts[i] for i in rows], pad_id, model.device)
                generated = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    pad_token_id=pad_id,
                    eos_token_id=stop_ids,
                    use_cache=True,
                    **_batch_cache(model, settings, [prompts[i] for i in rows], pad_id),
                    **settings.generate_kwargs(input_ids.shape[1]),
                )
                for row, ids in zip(rows, generated[:, input_ids.shape[1] :].tolist()):
                    outputs[row] = _until_stop(ids, stop_ids)
    finally:
        model.train(was_training)
    return outputs


FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"  # read by transformers' sdpa attention at every call


@contextmanager
def grouped_query_sdpa(device: Any) -> Iterator[None]:
    """On a CPU, sdpa's grouped-query path (`enable_gqa`) under a padding mask too. transformers takes it there only
    without a mask (on CUDA a mask sends it to the slow math kernel) and folds the query heads of each key/value
    head together instead (`pack_gqa`); on a CPU a decoding step of 32 PubMedQA prompts ran 1.13-1.15x faster on
    the kernel's own path (docs/BENCHMARKS.md). Elsewhere nothing changes."""
    if device.type != "cpu":
        yield
        return
    before = os.environ.get(FORCE_GQA)
    os.environ[FORCE_GQA] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[FORCE_GQA]
        else:
            os.environ[FORCE_GQA] = before


@contextmanager
def contiguous_head_input(model: Any) -> Iterator[None]:
    """The language-model head gets a contiguous input inside the block. A prefill (or the scoring of labels after a
    prompt) projects only the last position, a strided view of the hidden states, and torch's matmul then copies
    the head's weight once per row of the batch to multiply it (8 rows x 576 x 49,152 for SmolLM2): 20% of a
    PubMedQA prefill of 16 prompts on a CPU (docs/BENCHMARKS.md), where copying the positions costs next to nothing."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(_contiguous_inputs)
    try:
        yield
    finally:
        handle.remove()


def _contiguous_inputs(module: Any, args: tuple) -> tuple:
    return tuple(arg.contiguous() if hasattr(arg, "contiguous") else arg for arg in args)


def _batch_cache(model: Any, settings: GenerationSettings, prompts: list, pad_id: int) -> dict[str, Any]:
    """A fresh reserved KV cache for one batch, prefilled without padding, where the settings ask for it and the
    model's layers allow it (beam search reorders and repeats the cache, which would reallocate it at every step:
    dynamic there; a cache asked for through `extra` is the caller's)."""
    if (
        settings.cache != "reserved"
        or settings.num_beams > 1
        or {"past_key_values", "cache_implementation"} & set(settings.extra)
    ):
        return {}
    from bioqa.kv_cache import prefilled_cache

    cache = prefilled_cache(model, prompts, pad_id, settings.max_new_tokens)
    return {} if cache is None else {"past_key_values": cache}


def stop_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's EOS, the chat template's end of turn (what training taught the model to end with) and
    any end-of-turn ids the model's generation config adds (e.g. Llama 3's <|eot_id|>)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [tokenizer.eos_token_id, turn_end_id(tokenizer), *configured] if i is not None})


def _until_stop(ids: list[int], stop_ids: list[int]) -> list[int]:
    """Generated ids up to the first stop token; what follows it is padding of a finished row."""
    for position, token in enumerate(ids):
        if token in stop_ids:
            return ids[:position]
    return ids


def generate_answers(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    progress: bool = False,
) -> list[str]:
    """Decoded, cleaned answers (special tokens and surrounding whitespace removed)."""
    token_ids = generate_token_ids(model, tokenizer, prompts, settings, progress)
    texts = tokenizer.batch_decode(token_ids, skip_special_tokens=True)
    return [postprocess_text(text, special_tokens=tokenizer.all_special_tokens) for text in texts]


def run_sharded(items: Sequence[Any], work: Callable[[list[Any]], list[Any]]) -> list[Any] | None:
    """`work` over `items` across the processes of torchrun / accelerate launch (or just this one).

    Process k of n works on items k, k+n, ...; the main process gathers every result and gets them in
    the order of `items`, each exactly once; the other processes get None.
    """
    from accelerate import PartialState

    state = PartialState()
    mine = list(range(state.process_index, len(items), state.num_processes))
    pairs = list(zip(mine, work([items[i] for i in mine])))
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    if not state.is_main_process:
        return None
    results = dict(pairs)
    return [results[i] for i in range(len(items))]


def label_logliks(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[list[float]]:
    """The log-likelihood of each continuation (a label as the answer would start) after each prompt: the sum
    of its tokens' log-probabilities, as lm-evaluation-harness scores multiple-choice tasks.

    Each prompt runs once: the first token of every label comes from its last position, and the prompt's cache,
    repeated once per label, feeds the labels' further tokens, so the cost is about one forward pass over the
    prompts however many labels there are. Rows are left-padded, with position ids that start at the first real
    token, so a prompt's numbers do not depend on its batch.
    """
    import torch
    from tqdm.auto import tqdm

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    result: list[list[float]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), contiguous_head_input(model):  # the prompts' last position is projected alone
            for start in tqdm(range(0, len(order), batch_size), desc="scoring labels", disable=not progress):
                rows = order[start : start + batch_size]
                scores = _batch_logliks(model, [prompts[i] for i in rows], continuations, pad_id)
                for row, values in zip(rows, scores):
                    result[row] = values
    finally:
        model.train(was_training)
    return result


def _batch_logliks(model: Any, batch: list, continuations: Sequence[Sequence[int]], pad_id: int) -> list[list[float]]:
    import torch

    input_ids, attention_mask = _left_padded(batch, pad_id, model.device)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    scores = torch.stack([first[:, c[0]] for c in continuations], dim=1)  # rows x labels
    longest = max(len(c) for c in continuations)
    if longest > 1:  # the labels' later tokens, after the prompt's cache repeated once per label
        labels, rows = len(continuations), len(batch)
        inputs = torch.full((labels, longest - 1), pad_id, dtype=torch.long)
        targets = torch.zeros((labels, longest - 1), dtype=torch.long)
        present = torch.zeros((labels, longest - 1), dtype=torch.long)
        for k, c in enumerate(continuations):
            inputs[k, : len(c) - 1], targets[k, : len(c) - 1], present[k, : len(c) - 1] = (
                torch.tensor(c[:-1]),
                torch.tensor(c[1:]),
                1,
            )
        out.past_key_values.batch_repeat_interleave(labels)
        device = input_ids.device
        later = model(
            input_ids=inputs.repeat(rows, 1).to(device),
            attention_mask=torch.cat(
                [attention_mask.repeat_interleave(labels, 0), present.repeat(rows, 1).to(device)], 1
            ),
            position_ids=positions[:, -1:].repeat_interleave(labels, 0) + 1 + torch.arange(longest - 1, device=device),
            past_key_values=out.past_key_values,
        ).logits.float()
        picked = torch.log_softmax(later, dim=-1).gather(2, targets.repeat(rows, 1).to(device)[..., None])[..., 0]
        scores += (picked * present.repeat(rows, 1).to(device)).sum(-1).view(rows, labels)
    return scores.tolist()


def choose_labels(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    continuations: dict[str, list[int]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[str]:
    """For each prompt, the label whose continuation is the most likely (`label_logliks`)."""
    labels = list(continuations)
    scores = label_logliks(model, tokenizer, prompts, list(continuations.values()), batch_size, progress)
    return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]


@dataclass(frozen=True)
class Answering:
    """How a set of prompts is answered: generated text (scored by the text metrics, and its label read), and/or
    the label chosen by log-likelihood among `continuations` (label -> the ids the answer would start with)."""

    settings: GenerationSettings
    generate: bool = True
    continuations: dict[str, list[int]] | None = None  # None: no log-likelihood scoring


class Answers(NamedTuple):
    texts: list[str] | None  # generated answers (None: not generated)
    loglik_labels: list[str] | None  # labels chosen by log-likelihood (None: not scored)


def answer_prompts(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], how: Answering, progress=False
) -> Answers | None:
    """Answer every prompt as `how` says, across processes; None in every process but the main one."""
    texts = labels = None
    with computing_in(model, how.settings.dtype, fold_lora=how.settings.fold_lora):
        if how.generate:
            texts = run_sharded(prompts, lambda mine: generate_answers(model, tokenizer, mine, how.settings, progress))
        if how.continuations:
            labels = run_sharded(
                prompts,
                lambda mine: choose_labels(
                    model, tokenizer, mine, how.continuations, how.settings.batch_size, progress
                ),
            )
    from accelerate import PartialState

    return Answers(texts, labels) if PartialState().is_main_process else None
