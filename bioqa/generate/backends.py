"""Which of the toolkit's own speed-ups a device gets by default: each only on the device where it was measured.

Every one below was measured on a CPU (docs/BENCHMARKS.md). On CUDA and MPS the default is transformers' own path
until a measurement on that device says otherwise; an option can still ask for the generation ones anywhere
(`--generation_cache reserved`, `--generation_fold_lora true`), and folding, the one that costs memory, checks
the device's free memory first and falls back, saying so in the log (`bioqa.generate.precision`).

* LoRA folded into copies of its weights while generating (precision.py): an evaluation 1.2x faster, for the
  adapted weights' memory once more;
* the reserved KV cache, prompts prefilled without padding (kv_cache.py): bf16 `--do_predict` 1.6-1.8x -> 2.16x
  the speed of fp32;
* the LM head's input made contiguous (generation.py): 20% of a PubMedQA prefill;
* sdpa's grouped-query path under a padding mask (generation.py): a decoding step 1.13-1.15x;
* float32 training attention, one-token bf16 queries as matrix products over whole buffers (attention.py,
  kv_cache.py): demo steps 1.22-1.39x, decoding attention 5-9x;
* LoRA inputs left in the autocast dtype (trainer.py): a step 1.15x.

Not on this list, because they compute the same numbers with less work on any device and were kept everywhere:
the loss on answer positions only (`logits_to_keep`) and dropping the mask of right-padded batches (`bioqa.train.loss`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    fold_lora: bool  # default of --generation_fold_lora
    cache: str  # default of --generation_cache
    contiguous_head: bool
    grouped_query_sdpa: bool
    cpu_attention: bool
    lora_input_casts_off: bool


CPU = Backend("the toolkit's CPU speed-ups", True, "reserved", True, True, True, True)
TRANSFORMERS = Backend(
    "transformers' own path (the CPU speed-ups are not measured here)", False, "dynamic", *[False] * 4
)


def backend_for(device: str) -> Backend:
    """The speed-ups `device` ("cuda", "mps", "cpu"; or a torch.device's type) gets by default."""
    return CPU if device == "cpu" else TRANSFORMERS
