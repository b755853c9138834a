"""Where the toolkit's local files live, resolved in one place.

`make setup` / `make model` write the NLTK data METEOR needs and the offline copy of the default
model into the repository (`nltk_data/`, `models/`). An installed package (or a shared machine)
can keep them elsewhere; these environment variables override, most specific first:

* BIOQA_NLTK_DATA: the NLTK data folder (wordnet, punkt_tab);
* BIOQA_MODELS_DIR: the folder holding `SmolLM2-135M-Instruct/`;
* BIOQA_HOME: a folder holding both as `nltk_data/` and `models/`.

They are read when asked for, so a notebook may set them after `import metrics_utils`.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository, above bioqa/io/ (an editable install points here)
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded default: offline, its copy in models/
DEFAULT_MODEL_FOLDER = "SmolLM2-135M-Instruct"


def home() -> Path:
    return Path(os.environ.get("BIOQA_HOME") or SOURCE_ROOT)


def nltk_data_dir() -> Path:
    return Path(os.environ.get("BIOQA_NLTK_DATA") or home() / "nltk_data")


def models_dir() -> Path:
    return Path(os.environ.get("BIOQA_MODELS_DIR") or home() / "models")


def local_default_model() -> Path:
    """The offline copy of the default model that `make model` writes."""
    return models_dir() / DEFAULT_MODEL_FOLDER


def looked_in(folder: Path, variable: str, below_home: str) -> str:
    """Where the toolkit looked for a local file and why, for an error that says it is missing: the environment
    variable that chose `folder` (a bogus value must be visible), or the repository's own folder."""
    if os.environ.get(variable):
        return f"{folder} (from {variable}; unset it, or point it to the folder that holds them)"
    if os.environ.get("BIOQA_HOME"):
        return f"{folder} (BIOQA_HOME/{below_home}, from BIOQA_HOME; unset it, or point it to the right folder)"
    return f"{folder}"
