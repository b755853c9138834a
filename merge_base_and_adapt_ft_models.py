"""Merge a LoRA adapter into its base model: a verified checkpoint for plain `from_pretrained`.

The command lives in bioqa/cli/merge.py (installed as `bioqa-merge`); this file keeps
`python merge_base_and_adapt_ft_models.py ...` working from the repository root.
"""

import sys

from bioqa.cli.merge import main

if __name__ == "__main__":
    sys.exit(main())
