"""Where a GPU run fails, tested at the boundary this CPU reaches: an evaluation that runs out of memory even one
prompt at a time (raised by the model's own forward, as CUDA's allocator does) keeps the epoch's training in a
checkpoint that resumes; a merge on a GPU too small for the base in float32 is refused before anything loads."""

import functools
import importlib
import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from helpers import ROOT, read_jsonl, run_flags
from tiny_models import make_adapter

EVALUATE_AT_4 = (
    "--max_steps 8 --eval_strategy steps --eval_steps 4 --save_strategy steps --save_steps 8 "
    "--per_device_train_batch_size 8 --learning_rate 1e-2 --lora_r 4 --generation_max_new_tokens 4 "
    "--generation_batch_size 4 --generation_eval_samples 8 --report_to none --seed 7"
).split()


def in_this_process(module: str, args: list[str], capfd) -> tuple[int, str]:
    """A command's `main` run here (so a test can reach into the model it loads): its exit code and stderr."""
    code = importlib.import_module(module).main(args)
    return code, capfd.readouterr().err


@pytest.fixture
def generating_runs_out_of_memory(monkeypatch):
    """Every forward while generating (inference mode) fails as a GPU without room would; training and the
    evaluation loss (no_grad) run as usual."""
    forward = LlamaForCausalLM.forward

    @functools.wraps(forward)
    def failing(self, *args, **kwargs):
        if torch.is_inference_mode_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", failing)
    return monkeypatch


@pytest.mark.slow
def test_an_evaluation_out_of_memory_saves_the_step_then_stops_and_the_run_resumes(
    tiny_model_dir, qa_file, tmp_path, capfd, caplog, generating_runs_out_of_memory
):
    out = tmp_path / "run"
    command = [*run_flags(tiny_model_dir, qa_file, out), *EVALUATE_AT_4]
    code, stderr = in_this_process("bioqa.cli.train", command, capfd)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1, stderr[-3000:]
    assert errors[0].startswith("error: out of cpu memory generating, even with --generation_batch_size 1")
    assert errors[0].endswith(
        f"the checkpoint of step 4 is in {out}/checkpoint-4: go on with --resume_from_checkpoint latest"
    )
    assert "going on in batches of 2" in caplog.text and "going on in batches of 1" in caplog.text  # 4 -> 2 -> 1
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()  # --save_steps 8: the Trainer would not have
    assert not (out / "adapter_model.safetensors").exists()  # no final output from a run that stopped

    generating_runs_out_of_memory.undo()  # memory to spare now: the same command goes on from step 4
    code, stderr = in_this_process("bioqa.cli.train", [*command, "--resume_from_checkpoint", "latest"], capfd)
    assert code == 0, stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file() and (out / "checkpoint-8").is_dir()
    answered = json.loads((out / "metrics.json").read_text())["eval_num_examples"]
    assert answered == 6 and len(read_jsonl(out / "predictions" / "eval-step-8.jsonl")) == answered  # all validation


def test_a_merge_on_a_gpu_without_room_for_the_base_in_float32_is_refused(tmp_path, capfd, monkeypatch):
    from bioqa import devices
    from bioqa.merging import merge as merging
    from tiny_models import make_base

    base = make_base(tmp_path / "base")
    adapter = make_adapter(base, tmp_path / "adapter")
    monkeypatch.setattr(devices, "cuda_available", lambda: True)  # a GPU torch can use ...
    monkeypatch.setattr(devices, "cuda_problem", lambda: None)
    monkeypatch.setattr(merging, "free_memory_bytes", lambda device: 1_000 if device == "cuda" else None)  # tiny
    monkeypatch.chdir(ROOT)
    out = tmp_path / "merged"
    args = ["--adapter_dir", str(adapter), "--base_model", str(base), "--output_dir", str(out), "--device", "cuda"]
    code, stderr = in_this_process("bioqa.cli.merge", args, capfd)
    needed = merging.estimated_output_bytes(merging.shard_files(Path(base)), "float32", "float32")
    assert code == 2 and stderr.strip().splitlines()[-1] == (
        f"error: --device cuda: the merge holds the base in float32 there, about {needed / 1e9:.1f} GB, and 0.0 GB "
        "of it is free; merge on the CPU (--device cpu, the default: the same float32 arithmetic in RAM, or shard "
        "by shard with --low_memory), or free the device"
    )
    assert not out.exists()
