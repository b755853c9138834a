"""Uploading a finished output to the Hugging Face Hub: only once every final file is in place, and
only the files that make the model (weights, tokenizer, card, configuration, manifest), never
checkpoints, prediction files (they quote the data) or a half-written folder."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from bioqa.errors import InputError, RunError, option, short
from bioqa.io.inventory import read_inventory

# The files a tokenizer is saved in (transformers' names for them): copied by name, so that a user's
# tokenizer.bak or tokenizer_notes.txt beside the adapter never travels into the merged model.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)

# What makes each kind of output; checkpoints, prediction files and the trainer's state stay local.
ADAPTER_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    *TOKENIZER_FILES,
    "README.md",
    "run_manifest.json",
    "run_config.yaml",
    "metrics.json",
    "predict_metrics.json",
)
MERGED_FILES = (
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    *TOKENIZER_FILES,
    "README.md",
    "run_manifest.json",
    "merge_report.json",
)


def hub_problems(offline: bool, has_token: bool) -> list[str]:
    """Why a push at the end of a run could not happen, known before anything runs."""
    if offline:
        return [
            f"{option('push_to_hub')}: the Hugging Face Hub cannot be reached from here; run without "
            f"{option('push_to_hub')} and upload the finished folder later (`hf upload <repo> <folder>`)"
        ]
    if not has_token:
        return [
            f"{option('push_to_hub')} needs a Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass "
            f"{option('hub_token')}"
        ]
    return []


def token_available(token: str | None) -> bool:
    from huggingface_hub import get_token

    return bool(token or get_token())


def pushed_files(folder: Path, patterns: tuple[str, ...]) -> list[str]:
    """The top-level files of `folder` an upload sends: those matching `patterns` among the files the command
    recorded writing there (bioqa.io.inventory), so that a user's notes beside them never leave the machine."""
    written = (read_inventory(folder) or {}).get("files") or {}
    return sorted(p for p in written if "/" not in p and any(fnmatch.fnmatch(p, g) for g in patterns))


def push_folder(
    folder: Path,
    repo_id: str,
    patterns: tuple[str, ...],
    *,
    token: str | None = None,
    private: bool | None = None,
    message: str,
) -> str:
    """Create `repo_id` if needed and upload the matching files of `folder` in one commit; its URL."""
    from huggingface_hub import HfApi

    files = pushed_files(folder, patterns)
    if "README.md" not in files:
        raise InputError(f"{folder} has no model card (README.md): it is not a finished output; finish the run first")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", allow_patterns=files, commit_message=message
        )
    except Exception as exc:  # network, permissions, quota: huggingface_hub raises many types
        raise RunError(
            f"the upload of {folder} to {repo_id} failed ({exc.__class__.__name__}: {short(str(exc), 200)}); "
            f"the folder is complete: upload it with `hf upload {repo_id} {folder}`"
        ) from None
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")
