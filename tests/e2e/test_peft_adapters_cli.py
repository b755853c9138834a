"""Adapters other than plain LoRA, end to end as a user runs them: train with --do_predict, then merge, verified."""

import json

import pytest
import torch

import bioqa.cli.merge as merge_script
from helpers import quick_training, read_jsonl, run_cli, run_flags

IDS = torch.tensor([[5, 17, 42, 9, 7, 25, 3, 61]])
SHORT = [
    *quick_training(8, save_steps=8),
    *("--generation_max_new_tokens", "6", "--max_predict_samples", "4", "--do_train", "--do_predict"),
    *("--precision", "fp32"),  # PiSSA's residual base would be rounded in bf16; fp32 makes its conversion exact
]
METHODS = {
    "dora": (["--use_dora"], "LORA", "DoRA"),
    "ia3": (["--peft_method", "ia3"], "IA3", "IA3"),
    "pissa": (["--peft_options", '{"init_lora_weights": "pissa"}', "--lora_r", "4"], "LORA", "LoRA"),
    "adalora": (
        [
            "--peft_method",
            "adalora",
            "--peft_options",
            json.dumps(dict(total_step=8, init_r=6, target_r=2, tinit=1, tfinal=2)),
        ],
        "ADALORA",
        "ADALORA",
    ),
}


def logits(folder, adapter=None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval()(input_ids=IDS).logits


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_peft_method_trains_predicts_and_merges_verified(method, tiny_model_dir, qa_file, tmp_path):
    flags, kind, name = METHODS[method]
    out = tmp_path / "out"
    result = run_cli(*run_flags(tiny_model_dir, qa_file, out), *SHORT, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == kind and f"{name}: " in result.stderr  # the log and the card name the method
    assert f"A {name} adapter for" in (out / "README.md").read_text()
    assert len(read_jsonl(out / "predictions.jsonl")) == 4
    assert merge_script.main(["--adapter_dir", str(out), "--output_dir", str(tmp_path / "merged")]) == 0
    report = json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    assert report["verification"]["passed"] and report["mode"].startswith("in memory")
    merged = logits(tmp_path / "merged")
    torch.testing.assert_close(merged, logits(tiny_model_dir, out), atol=1e-4, rtol=0)
    assert not torch.allclose(merged, logits(tiny_model_dir), atol=1e-3)  # the adapter changed the model
    if method == "dora":
        assert config["use_dora"]
    if method == "adalora":  # the budget moved: the callback called peft's update_and_allocate
        assert config["rank_pattern"] and not all(all(mask) for mask in config["rank_pattern"].values())
    if method == "pissa":
        # saved converted: a plain LoRA of twice the rank on the unchanged base, equal to the unconverted checkpoint
        # of the same step (which peft re-initialises from the base on loading)
        assert (config["r"], config["init_lora_weights"]) == (8, True)
        checkpoint = out / "checkpoint-8"
        assert json.loads((checkpoint / "adapter_config.json").read_text())["init_lora_weights"] == "pissa"
        torch.testing.assert_close(merged, logits(tiny_model_dir, checkpoint), atol=1e-4, rtol=0)
        assert merge_script.main(["--adapter_dir", str(out), "--output_dir", str(tmp_path / "s"), "--low_memory"]) == 0
        assert merge_script.main(["--adapter_dir", str(checkpoint), "--low_memory"]) == 2  # unconverted: refused
