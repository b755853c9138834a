"""Merge a LoRA adapter into its base model: a verified checkpoint for plain `from_pretrained`.

The base is read from the adapter's own adapter_config.json (`--base_model` overrides). The merged
model (safetensors, sharded), the tokenizer with its chat template, generation_config.json, the
adapter's run_manifest.json, a model card (README.md) and a merge_report.json are written to a
temporary folder beside the target and renamed into place only after the verification passed;
--push_to_hub then uploads the folder.

    bioqa-merge --adapter_dir outputs/run1                                         # -> outputs/run1-merged
    python merge_base_and_adapt_ft_models.py --adapter_dir outputs/run1            # the same, from the repository
    python merge_base_and_adapt_ft_models.py --adapter_dir outputs/run1 --dtype bf16 --low_memory
"""

from __future__ import annotations

import logging
import sys

from bioqa import merge_run
from bioqa.cli.runner import run_main
from bioqa.config import build_parser, parse_arguments


def merge(argv: list[str] | None) -> int:
    settings = parse_arguments(build_parser([merge_run.MergeSettings], description=__doc__.split("\n\n")[0]), argv)[0]
    logging.basicConfig(format="[bioqa] %(levelname)s %(message)s", level=logging.INFO, stream=sys.stderr)
    print(merge_run.run(settings).summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: merge(argv))


if __name__ == "__main__":
    sys.exit(main())
