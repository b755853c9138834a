"""Batched greedy generation from prompt token ids: for evaluation, prediction and merge checks.

Prompts are sorted by length and left-padded per batch (decoder-only models continue from the
right end), so batches hold prompts of similar length and little padding; answers come back in
the caller's order. Padding is built here from the ids, so the tokenizer's own padding side (right,
for training) is never changed. With greedy decoding the answers equal one-prompt-at-a-time
generation (tested).

The repetition guards look at the answer only. transformers' own `no_repeat_ngram_size` and
`repetition_penalty` count the prompt too for decoder-only models, so they forbid or penalise
quoting the context: on PubMedQA that cost the fine-tuned model ROUGE-L (docs/BENCHMARKS.md).

The KV cache and LoRA folding default to what the device's backend has (`bioqa.generate.backends`): on a CPU the
reserved cache (`bioqa.generate.kv_cache`) and folded LoRA updates, sdpa's own grouped-query path in decoding steps
(`grouped_query_sdpa`) and, in bf16, one-token queries attended with matrix products (`bioqa.generate.attention`);
elsewhere transformers' dynamic cache and PEFT's adapter layers. An out-of-memory error halves the batch
(`bioqa.generate.batches`).

`answer_prompts` runs in the settings' dtype (`bioqa.generate.precision`), so the same answers and label scores come
from the adapter during training and reloaded from its folder (tested). For questions with a label set it can also,
or instead, choose the label by log-likelihood (`bioqa.generate.loglik`); either runs across processes (`run_sharded`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from bioqa import compat
from bioqa.data.prompts import turn_end_id
from bioqa.generate import backends
from bioqa.generate.batches import by_length_in_batches, contiguous_head_input, left_padded, pad_id_of
from bioqa.generate.loglik import choose_labels
from bioqa.generate.postprocess import postprocess_text
from bioqa.generate.precision import computing_in

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
    # KV cache: reserved (generate.kv_cache), dynamic, static, compiled (static + torch.compile); auto: the device's
    cache: str = "auto"
    fold_lora: bool | None = None  # LoRA folded into copies of its weights (generate.precision); None: the device's
    extra: dict = field(default_factory=dict)  # any other generate() keyword

    def for_device(self, device: str) -> GenerationSettings:
        """These settings with the cache and folding the device's backend has, where they are left to it."""
        backend = backends.backend_for(device)
        return replace(
            self,
            cache=backend.cache if self.cache == "auto" else self.cache,
            fold_lora=backend.fold_lora if self.fold_lora is None else self.fold_lora,
        )

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
    if cache in ("dynamic", "reserved", "auto"):
        return {}
    if cache == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    from transformers import CompileConfig

    config = CompileConfig(mode="default")
    compat.compile_on_every_device(config)
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


def generate_token_ids(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    progress: bool = False,
) -> list[list[int]]:
    """New token ids for each prompt (prompt not included), in the order of `prompts`."""
    import torch

    settings = settings.for_device(model.device.type)
    pad_id, stop_ids = pad_id_of(tokenizer), stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), grouped_query_sdpa(model.device), contiguous_head_input(model):
            return by_length_in_batches(
                prompts,
                settings.batch_size,
                lambda batch: _generate_batch(model, batch, settings, pad_id, stop_ids),
                model.device,
                "generating",
                progress,
            )
    finally:
        model.train(was_training)


def _generate_batch(
    model: Any, batch: list, settings: GenerationSettings, pad_id: int, stop_ids: list[int]
) -> list[list[int]]:
    input_ids, attention_mask = left_padded(batch, pad_id, model.device)
    generated = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pad_token_id=pad_id,
        eos_token_id=stop_ids,
        use_cache=True,
        **_batch_cache(model, settings, batch, pad_id),
        **settings.generate_kwargs(input_ids.shape[1]),
    )
    return [_until_stop(ids, stop_ids) for ids in generated[:, input_ids.shape[1] :].tolist()]


FORCE_GQA = compat.SDPA_FORCE_GQA


@contextmanager
def grouped_query_sdpa(device: Any) -> Iterator[None]:
    """Where the device's backend has it (a CPU), sdpa's grouped-query path (`enable_gqa`) under a padding mask too.
    transformers takes it there only without a mask (on CUDA a mask sends it to the slow math kernel) and folds the
    query heads of each key/value head together instead (`pack_gqa`); on a CPU a decoding step of 32 PubMedQA
    prompts ran 1.13-1.15x faster on the kernel's own path (docs/BENCHMARKS.md). Elsewhere nothing changes."""
    if not backends.backend_for(device.type).grouped_query_sdpa:
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
    from bioqa.generate.kv_cache import prefilled_cache

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
    how = replace(how, settings=how.settings.for_device(model.device.type))
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
