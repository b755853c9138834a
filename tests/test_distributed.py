"""Two processes on this CPU (torchrun, gloo): training and generation-based evaluation neither
deadlock nor score an example twice, and only the main process writes the outputs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_torchrun_two_processes(tiny_model_dir, qa_file, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "out"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "load_models.py",
           "--model_name_or_path", str(tiny_model_dir), "--train_file", str(qa_file), "--output_dir", str(out),
           "--max_steps", "8", "--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "no",
           "--per_device_train_batch_size", "4", "--generation_max_new_tokens", "8", "--report_to", "none",
           "--precision", "fp32"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    for step in (4, 8):
        rows = [json.loads(line) for line in (out / "predictions" / f"eval-step-{step}.jsonl").read_text().splitlines()]
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)) == 6  # every validation example generated and scored exactly once
    metrics = json.loads((out / "metrics.json").read_text())
    assert "eval_rougeL" in metrics and (out / "adapter_model.safetensors").is_file()
    assert not list(out.glob(".*.tmp"))
