"""Fine-tune a causal language model with LoRA on biomedical question answering, and predict.

The command lives in bioqa/cli/train.py (installed as `bioqa-train`); this file keeps
`python load_models.py ...` working from the repository root. `--help` lists every option.
"""

import sys

from bioqa.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
