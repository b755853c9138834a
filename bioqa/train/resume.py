"""Resuming a run: which checkpoint, whether its settings are the ones asked for, whether it is finished.

A resumed run must be the run it continues: every setting whose role is training, data or example
(`bioqa.roles.RESUMED`: model, data and its split, fields and labels, prompt and target, LoRA, optimizer,
schedule, batch, seed, precision) is compared with the run's own run_config.yaml and a difference is
refused, naming the settings. A checkpoint at the last step
is a finished training: resuming it trains nothing more, it only evaluates and saves what is missing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bioqa.errors import InputError, option, short
from bioqa.io.files import file_sha256, read_json, read_run_config
from bioqa.settings import resumed_settings
from bioqa.train.trainer import complete_checkpoints

log = logging.getLogger("bioqa")


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders without trainer_state.json, which the Trainer writes last: a save cut short."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and p.is_dir()]
    return sorted((p for p in found if not (p / "trainer_state.json").is_file()), key=_step)


def _latest(wanted: str, output_dir: str) -> Path:
    """The newest complete checkpoint; newer incomplete ones are named (in the refusal, or in a warning)."""
    found = next(reversed(complete_checkpoints(output_dir)), None)
    newer = [p.name for p in incomplete_checkpoints(output_dir) if found is None or _step(p) > _step(found)]
    incomplete = f"{', '.join(newer)} is incomplete (no trainer_state.json: its save was cut short)"
    if found is None and newer:
        raise InputError(
            f"{option('resume_from_checkpoint')} {wanted}: no complete checkpoint in {output_dir}; {incomplete}; "
            f"remove it and start again without {option('resume_from_checkpoint')}, or give a checkpoint path"
        )
    if found is None:
        raise InputError(
            f"{option('resume_from_checkpoint')} {wanted}: no checkpoint-* folder in {output_dir}; "
            "start without it or give the checkpoint path"
        )
    if newer:
        log.warning("resuming from %s, the last complete checkpoint; %s", found, incomplete)
    return found


def resume_checkpoint(wanted: str | None, output_dir: str) -> Path | None:
    """--resume_from_checkpoint: a checkpoint folder, or `latest` for the newest complete one in --output_dir."""
    if wanted in (None, "", "false", "False"):
        return None
    if wanted in ("latest", "true", "True"):
        return _latest(wanted, output_dir)
    if not Path(wanted).is_dir():
        raise InputError(
            f"{option('resume_from_checkpoint')} {wanted} is not a folder; give a checkpoint-* folder or `latest`"
        )
    if not (Path(wanted) / "trainer_state.json").is_file():
        raise InputError(
            f"{option('resume_from_checkpoint')} {wanted} is not a complete checkpoint (no trainer_state.json); "
            "give an earlier checkpoint-* folder"
        )
    return Path(wanted)


def check_same_settings(checkpoint: Path, current: dict[str, Any]) -> None:
    """InputError naming every training setting that differs from the run the checkpoint belongs to."""
    config_file = checkpoint.parent / "run_config.yaml"
    if not config_file.is_file():
        raise InputError(
            f"cannot check that the resumed run keeps its settings: {config_file} is missing; restore "
            f"it, or start a new run without {option('resume_from_checkpoint')}"
        )
    saved = read_run_config(config_file)
    changed = [
        f"{option(key)} {_shown(saved.get(key))} -> {_shown(current.get(key))}"
        for key in resumed_settings()
        if key in current and _normal(saved.get(key)) != _normal(current.get(key))
    ]
    if changed:
        raise InputError(
            f"resuming {checkpoint} with other training settings ({'; '.join(changed)}) would not "
            f"continue that run; resume with the settings of {config_file}, or start a new run in "
            f"another {option('output_dir')}"
        )


def check_same_data(checkpoint: Path, train_file: str | None) -> None:
    """InputError if the training file's content changed since the run started (the SHA-256 in its manifest);
    the same path with other data would continue another run."""
    manifest_file = checkpoint.parent / "run_manifest.json"
    if not train_file or not manifest_file.is_file() or not Path(train_file).is_file():
        return
    manifest = read_json(manifest_file, "the run's manifest")
    recorded = (
        ((manifest.get("data_sources") or {}).get("train") or {}).get("sha256") if isinstance(manifest, dict) else None
    )
    if recorded and recorded != file_sha256(Path(train_file)):
        raise InputError(
            f"{option('train_file')} {train_file} changed since the run in {checkpoint.parent} started (its SHA-256 "
            f"differs from {manifest_file}); resume with the data it was trained on, or start a new run "
            f"in another {option('output_dir')}"
        )


def _normal(value: Any) -> Any:
    """Numbers compare as numbers (YAML writes 2e-4 as 0.0002), lists as lists, and a path to something that exists
    as the place it names (data/train.jsonl is /home/me/data/train.jsonl when run from /home/me)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, str) and value and os.path.exists(value):
        return os.path.realpath(value)
    return value


def _shown(value: Any) -> str:
    return short(" ".join(map(str, value)) if isinstance(value, list) else str(value), 60)


def finished_step(checkpoint: Path) -> int | None:
    """The step of a checkpoint taken at the end of training (global_step reached max_steps), else None."""
    state = read_json(checkpoint / "trainer_state.json", "the checkpoint's trainer state")
    step, last = state.get("global_step"), state.get("max_steps")
    return step if isinstance(step, int) and isinstance(last, int) and last > 0 and step >= last else None


def check_checkpoint_files(checkpoint: Path) -> None:
    """InputError naming a damaged file of the checkpoint (and the previous complete one) before any of it loads:
    torch's .pt / .pth / .bin files are zip archives whose checksums are tested, safetensors headers are read."""
    import zipfile

    from safetensors import safe_open

    for file in sorted(checkpoint.iterdir()):
        try:
            if file.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(file) as archive:
                    bad = archive.testzip()
                if bad:
                    raise ValueError(f"its part {bad} fails its checksum")
            elif file.suffix == ".safetensors":
                with safe_open(file, framework="pt") as handle:
                    for name in handle.keys():
                        handle.get_tensor(name)
        except Exception as exc:  # zipfile, safetensors and OSError: every way a file can be damaged
            raise InputError(f"{file} is damaged ({short(str(exc), 100)}); {_previous(checkpoint)}") from None


def _previous(checkpoint: Path) -> str:
    earlier = (
        [
            c
            for c in complete_checkpoints(checkpoint.parent)
            if c != checkpoint and int(c.name.split("-")[-1]) < int(checkpoint.name.split("-")[-1])
        ]
        if checkpoint.name.split("-")[-1].isdigit()
        else []
    )
    if earlier:
        return f"resume from the previous complete checkpoint: {option('resume_from_checkpoint')} {earlier[-1]}"
    return "no earlier complete checkpoint exists: start the run again"


def completed_run(output_dir: Path) -> bool:
    """Whether the run in `output_dir` saved its final files: the adapter and a manifest that says it finished."""
    manifest = output_dir / "run_manifest.json"
    if not ((output_dir / "adapter_model.safetensors").is_file() and manifest.is_file()):
        return False
    return "finished_at" in read_json(manifest, "the run's manifest") and (output_dir / "metrics.json").is_file()
