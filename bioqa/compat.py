"""Every use of another library's private attribute, method or switch, in one place, with the version it was
written for.

The toolkit reaches past public APIs where they offer no way to do something it needs (each function says
why). Such a name can move in any release, so each use lives here, and `problems()` checks that every one is
still where it was; when one is not, it names the pin that moved (`WRITTEN_FOR`, the same versions as
requirements.txt: a test keeps them equal). `bioqa-doctor` runs the check; the test suite runs it against the
installed versions. The Trainer's private methods the toolkit overrides are listed in `OVERRIDDEN`.
"""

from __future__ import annotations

import importlib
import inspect
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

WRITTEN_FOR = {
    "torch": "2.13.0",
    "transformers": "5.23.0",
    "peft": "0.21.2",
    "accelerate": "1.15.0",
    "nltk": "3.10.4",
    "sacrebleu": "2.6.0",
    "python": "3.11",  # argparse's; the pins above are for the Python requirements.txt is tested with
}

# transformers' sdpa attention reads this at every call: set, it takes torch's grouped-query path (enable_gqa)
# under a padding mask too, not only without one.
SDPA_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"

# Trainer methods `bioqa.train.trainer.BioQATrainer` overrides: the checkpoint it records, the gradient norm it checks,
# the length-grouped sampler it gives. transformers has no public hook for any of the three.
OVERRIDDEN = ("_save_checkpoint", "_get_grad_norm", "_get_train_sampler")


def compile_on_every_device(config: Any) -> None:
    """A transformers CompileConfig that compiles the decoding step on any device, not only on a GPU."""
    config._compile_all_devices = True


def set_lora_layer_disabled(module: Any, disabled: bool) -> None:
    """A peft layer's adapters off or on, without peft's `enable_adapters()`, which also flips requires_grad (the
    adapter being trained would stop training)."""
    module._disable_adapters = disabled


def use_one_gpu(args: Any) -> None:
    """A TrainingArguments' GPU count set to 1, as transformers' own Trainer does for a model spread over GPUs, so
    that it never wraps the model in nn.DataParallel."""
    args._n_gpu = 1


def supports_default_dynamic_cache(model: Any) -> bool:
    """Whether `generate` would build a plain DynamicCache for the model (no cache of its own kind)."""
    return model._supports_default_dynamic_cache()


def supports_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward takes `logits_to_keep` (the LM head on the last positions only)."""
    return model._supports_logits_to_keep()


def forward_without_autocast(model: Any) -> Callable | None:
    """The model's own forward, under the autocast wrapper accelerate puts on a prepared model (None: no wrapper)."""
    return getattr(model, "_original_forward", None)


def attention_implementation(config: Any) -> str | None:
    """The attention kernel a loaded model runs (transformers resolves the requested one into this attribute)."""
    return getattr(config, "_attn_implementation", None)


def cpu_has_bf16_instructions() -> bool:
    """AVX512-BF16 or AMX on this CPU, by torch's own probes (torch has no public query)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def bleu_corpus_statistics(metric: Any, predictions: list[str], references: list[list[str]]) -> list:
    """sacrebleu's per-sentence BLEU statistics (n-gram matches and totals, lengths), which its public API only sums."""
    return metric._extract_corpus_statistics(predictions, references)


def bleu_from_statistics(metric: Any, statistics: list) -> Any:
    """A BLEU score from (summed or one sentence's) statistics, without tokenising again."""
    return metric._compute_score_from_stats(statistics)


def wordnet_forms(reader: Any, word: str, pos: str) -> list[str]:
    """WordNet's base forms of a word (its morphy, with exceptions)."""
    return reader._morphy(word, pos, True)


def wordnet_offsets(reader: Any, form: str, pos: str) -> list[int]:
    """The synset offsets of a lemma, read from the index NLTK already holds (no Synset objects built)."""
    return reader._lemma_pos_offset_map.get(form, {}).get(pos, [])


def wordnet_data_file(reader: Any, pos: str) -> str:
    """The suffix of WordNet's data file for a part of speech (data.noun, ...), read whole by the METEOR scorer."""
    return reader._FILEMAP[pos]


def parser_actions(parser: Any) -> list:
    """An argparse parser's actions (the options HfArgumentParser made from the dataclasses), to adjust or list."""
    return parser._actions


def untimed_pattern(pattern: Any) -> Any:
    """The compiled `regex` pattern inside NLTK's ReDoS wrapper (same engine and pattern, no per-call timer)."""
    return getattr(pattern, "_rx", pattern)


def open_progress_bars() -> list:
    """The tqdm bars still open, to close before an error line is printed (none if tqdm was never imported)."""
    tqdm = sys.modules.get("tqdm")
    return list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()))


# Each private name used above: (library, where, name). `module:Class` is looked up on the class; a bare module
# where the name is set only on instances (or read from the environment) is looked for in the module's source.
_USED = (
    ("transformers", "transformers:CompileConfig", "_compile_all_devices"),
    ("transformers", "transformers.training_args", "self._n_gpu"),
    ("transformers", "transformers:GenerationMixin", "_supports_default_dynamic_cache"),
    ("transformers", "transformers:GenerationMixin", "_supports_logits_to_keep"),
    ("transformers", "transformers:PretrainedConfig", "_attn_implementation"),
    ("transformers", "transformers.integrations.sdpa_attention", SDPA_FORCE_GQA),
    *(("transformers", "transformers:Trainer", name) for name in OVERRIDDEN),
    ("peft", "peft.tuners.tuners_utils:BaseTunerLayer", "_disable_adapters"),
    ("accelerate", "accelerate.accelerator", "_original_forward"),
    ("torch", "torch:cpu", "_is_avx512_bf16_supported"),
    ("torch", "torch:cpu", "_is_amx_tile_supported"),
    ("sacrebleu", "sacrebleu.metrics:BLEU", "_extract_corpus_statistics"),
    ("sacrebleu", "sacrebleu.metrics:BLEU", "_compute_score_from_stats"),
    ("nltk", "nltk.corpus.reader.wordnet:WordNetCorpusReader", "_morphy"),
    ("nltk", "nltk.corpus.reader.wordnet", "self._lemma_pos_offset_map"),
    ("nltk", "nltk.corpus.reader.wordnet:WordNetCorpusReader", "_FILEMAP"),
    ("nltk", "nltk.redos", "_rx"),
    ("python", "argparse", "self._actions"),
)


def _present(where: str, name: str) -> bool:
    module, _, owner = where.partition(":")
    loaded = importlib.import_module(module)
    if owner:
        return hasattr(getattr(loaded, owner), name)
    return name in inspect.getsource(loaded)


def _installed(library: str) -> str | None:
    if library == "python":
        return ".".join(platform.python_version_tuple()[:2])
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def _moved(library: str, what: str) -> str:
    return (
        f"{library} {_installed(library)} has no {what}, which bioqa uses (written for {library} "
        f"{WRITTEN_FOR[library]}, the pin in requirements.txt); install the pinned version, or update bioqa/compat.py"
    )


def problems() -> list[str]:
    """One line for each private name that is not where the pinned version had it (empty: all in place)."""
    return [
        _moved(library, f"{where.replace(':', '.')}.{name.removeprefix('self.')}")
        for library, where, name in _USED
        if _installed(library) and not _present(where, name)
    ]


def version_differences() -> dict[str, tuple[str | None, str]]:
    """{library: (installed, written for)} for each library whose installed version is not the one written for."""
    return {
        library: (_installed(library), pinned)
        for library, pinned in WRITTEN_FOR.items()
        if (_installed(library) or "").split("+")[0] != pinned  # a local tag (+cpu, +cu130) is the same release
    }
