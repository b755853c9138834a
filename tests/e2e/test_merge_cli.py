"""merge_base_and_adapt_ft_models.py: merged models equal base + adapter, from disk, in both modes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bioqa.cli.merge as merge_script
from bioqa import merge_run
from bioqa.io.inventory import file_records, write_inventory
from bioqa.merging import merge as merging
from helpers import ROOT
from tiny_models import make_adapter, make_base


def reference_logits(base: Path, adapter: Path, ids: torch.Tensor, add_token: bool = False) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if add_token:
        model.resize_token_embeddings(model.get_input_embeddings().weight.shape[0] + 1)
    return PeftModel.from_pretrained(model, adapter).eval()(input_ids=ids).logits


def merged_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(input_ids=ids).logits


def run_merge(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "merge_base_and_adapt_ft_models.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    base = make_base(root / "base", shard="40KB")
    return base, make_adapter(base, root / "adapter")


IDS = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 61]])


def test_cli_merge_equals_base_plus_adapter_and_keeps_tokenizer(base_and_adapter):
    from transformers import AutoTokenizer

    base, adapter = base_and_adapter
    result = run_merge("--adapter_dir", str(adapter))
    assert result.returncode == 0, result.stderr[-3000:]
    out = adapter.parent / "adapter-merged"
    torch.testing.assert_close(merged_logits(out, IDS), reference_logits(base, adapter, IDS), atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template and len(tokenizer) == 400
    assert (out / "generation_config.json").is_file() and json.loads((out / "run_manifest.json").read_text()) == {
        "seed": 7
    }
    report = json.loads((out / "merge_report.json").read_text())
    assert report["verification"]["passed"] and report["verification"]["top1_agreement"] == 1.0
    assert report["verification"]["identical_greedy_answers"] == "4/4" and report["base_model"] == str(base)
    assert report["peak_memory_mb"] > 0 and report["dtype"] == "float32"
    again = run_merge("--adapter_dir", str(adapter))
    assert again.returncode == 0 and "already holds this adapter" in again.stdout


def test_streaming_merge_equals_merge_and_unload(base_and_adapter, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base, adapter = base_and_adapter
    assert len(list(base.glob("model-*.safetensors"))) > 2  # the base really is sharded
    result = run_merge("--adapter_dir", str(adapter), "--low_memory", "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    streamed = {}
    for shard in (tmp_path / "out").glob("*.safetensors"):
        streamed.update(load_file(shard))
    expected = (
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload().state_dict()
    )
    assert set(streamed) == {k for k in expected if k != "lm_head.weight"}  # tied head: stored once, as in the base
    for name, tensor in streamed.items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)
    report = json.loads((tmp_path / "out" / "merge_report.json").read_text())
    # the base fits in memory once: verified against PEFT's own base + adapter, not the merge's reading of it
    assert report["verification"]["method"].startswith("logits") and report["verification"]["top1_agreement"] == 1.0
    torch.testing.assert_close(
        merged_logits(tmp_path / "out", IDS), reference_logits(base, adapter, IDS), atol=1e-4, rtol=0
    )


def test_streaming_checks_weight_by_weight_when_the_base_fits_no_second_time(base_and_adapter, tmp_path, monkeypatch):
    base, adapter = base_and_adapter
    for where in (merge_run, merging):  # the choice to stream, and the choice of verification
        monkeypatch.setattr(where, "fits_in_memory", lambda *args, **kwargs: False)
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "merge_report.json").read_text())
    assert report["verification"]["weights_checked"] == 14 and report["verification"]["max_relative_error"] < 1e-5


def test_a_pair_the_merge_misses_fails_verification(base_and_adapter, tmp_path, monkeypatch, capsys):
    from bioqa.merging import adapters

    base, adapter = base_and_adapter
    real_pairs = adapters.lora_pairs
    monkeypatch.setattr("bioqa.merging.merge.lora_pairs", lambda tensors: dict(list(real_pairs(tensors).items())[1:]))
    assert (
        merge_script.main(["--adapter_dir", str(adapter), "--low_memory", "--output_dir", str(tmp_path / "out")]) == 1
    )
    assert "verification failed, nothing kept" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_weight_by_weight_verification_finds_a_pair_the_merge_missed(base_and_adapter, tmp_path, monkeypatch, capsys):
    from bioqa.merging import adapters

    base, adapter = base_and_adapter
    for where in (merge_run, merging):  # streaming, checked weight by weight
        monkeypatch.setattr(where, "fits_in_memory", lambda *args, **kwargs: False)
    real_pairs = adapters.lora_pairs
    monkeypatch.setattr("bioqa.merging.merge.lora_pairs", lambda tensors: dict(list(real_pairs(tensors).items())[1:]))
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    missed = next(iter(real_pairs(load_adapter_tensors(adapter))))
    assert "verification failed, nothing kept" in err and f'"not_merged": ["{missed}"]' in err
    assert not (tmp_path / "out").exists()


def load_adapter_tensors(adapter):
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


@pytest.mark.parametrize("low_memory", [False, True])
def test_a_merged_weight_that_is_not_finite_is_refused(base_and_adapter, tmp_path, capsys, low_memory):
    from safetensors.torch import load_file, save_file

    base, adapter = base_and_adapter
    damaged = tmp_path / "adapter"
    shutil.copytree(adapter, damaged)
    tensors = load_file(damaged / "adapter_model.safetensors")
    name = next(key for key in tensors if key.endswith("lora_B.weight"))
    tensors[name][0, 0] = float("inf")
    save_file(tensors, damaged / "adapter_model.safetensors")
    args = ["--adapter_dir", str(damaged), "--output_dir", str(tmp_path / "out"), *(["--low_memory"] * low_memory)]
    assert merge_script.main(args) == 1
    err = capsys.readouterr().err
    assert "holds NaN or inf; the adapter is damaged or diverged in training" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "lora", [{"use_rslora": True}, {"rank_pattern": {"q_proj": 2}, "alpha_pattern": {"down_proj": 3}}]
)
def test_streaming_scales_like_peft(base_and_adapter, tmp_path, lora):
    base, _ = base_and_adapter
    adapter = make_adapter(base, tmp_path / "adapter", **lora)
    assert (
        merge_script.main(["--adapter_dir", str(adapter), "--low_memory", "--output_dir", str(tmp_path / "out")]) == 0
    )
    torch.testing.assert_close(
        merged_logits(tmp_path / "out", IDS), reference_logits(base, adapter, IDS), atol=1e-4, rtol=0
    )


def test_trained_head_of_tied_model_is_untied(tmp_path, capsys):
    base = make_base(tmp_path / "base", tie=True)
    adapter = make_adapter(base, tmp_path / "adapter", modules_to_save=["lm_head"])
    assert merge_script.main(["--adapter_dir", str(adapter), "--low_memory"]) == 2
    assert "tied input/output embeddings" in capsys.readouterr().err
    assert merge_script.main(["--adapter_dir", str(adapter)]) == 0
    out = tmp_path / "adapter-merged"
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    torch.testing.assert_close(merged_logits(out, IDS), reference_logits(base, adapter, IDS), atol=1e-4, rtol=0)


def test_added_tokens_and_resized_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    base = make_base(tmp_path / "base", tie=False)
    adapter = make_adapter(base, tmp_path / "adapter", add_token=True, modules_to_save=["embed_tokens", "lm_head"])
    assert merge_script.main(["--adapter_dir", str(adapter)]) == 0
    out = tmp_path / "adapter-merged"
    ids = torch.tensor([[5, 17, 400, 42]])  # 400: the added token
    torch.testing.assert_close(
        merged_logits(out, ids), reference_logits(base, adapter, ids, add_token=True), atol=1e-4, rtol=0
    )
    assert len(AutoTokenizer.from_pretrained(out)) == 401


def test_bf16_merge_passes_bf16_tolerance_and_dora_merges_in_memory(base_and_adapter, tmp_path):
    # weights of a trained model's scale (initializer 0.02): the chaotic 0.5-scale tiny model would
    # turn bf16 rounding into different tokens
    smooth = make_base(tmp_path / "smooth", init_range=0.02)
    smooth_adapter = make_adapter(smooth, tmp_path / "smooth-adapter")
    assert (
        merge_script.main(
            ["--adapter_dir", str(smooth_adapter), "--dtype", "bf16", "--output_dir", str(tmp_path / "bf16")]
        )
        == 0
    )
    report = json.loads((tmp_path / "bf16" / "merge_report.json").read_text())
    assert report["dtype"] == "bfloat16" and report["verification"]["passed"]
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    base, _ = base_and_adapter
    dora = make_adapter(base, tmp_path / "dora", use_dora=True)
    assert merge_script.main(["--adapter_dir", str(dora), "--low_memory"]) == 2
    assert merge_script.main(["--adapter_dir", str(dora)]) == 0
    torch.testing.assert_close(
        merged_logits(tmp_path / "dora-merged", IDS), reference_logits(base, dora, IDS), atol=1e-4, rtol=0
    )


def test_failure_mid_write_keeps_nothing_and_leaves_old_output(base_and_adapter, tmp_path, monkeypatch):
    base, adapter = base_and_adapter
    out = tmp_path / "out"
    out.mkdir()
    (out / "merge_report.json").write_text("{}")  # an earlier merge's output: --overwrite may replace it
    (out / "config.json").write_text("previous merge")
    write_inventory(out, "merge_base_and_adapt_ft_models.py", file_records(out))

    def broken_save(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk went away"):
        merge_script.merge(["--adapter_dir", str(adapter), "--output_dir", str(out), "--overwrite"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder, no lock left
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "merge_report.json", "written_files.json"]
    assert (out / "config.json").read_text() == "previous merge"


def test_failed_verification_exits_1_and_keeps_nothing(base_and_adapter, tmp_path, monkeypatch, capsys):
    from bioqa.merging import verification

    base, adapter = base_and_adapter
    monkeypatch.setitem(verification.TOLERANCES, "float32", (-1.0, 1.0, 1e-5))  # nothing can pass
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "out")]) == 1
    assert "verification failed, nothing kept" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_not_enough_disk_space_is_refused_before_writing(base_and_adapter, tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    base, adapter = base_and_adapter
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "o")]) == 2
    assert "not enough disk space" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_only_adapter_dir_is_required(capsys):
    assert merge_script.main([]) == 2
    assert "--adapter_dir" in capsys.readouterr().err


def test_lora_bias_merges_where_the_base_has_biases_and_is_refused_where_not(base_and_adapter, tmp_path, capsys):
    base, _ = base_and_adapter
    plain = make_adapter(base, tmp_path / "plain", lora_bias=True)
    for flags in ([], ["--low_memory"]):
        assert merge_script.main(["--adapter_dir", str(plain), "--output_dir", str(tmp_path / "x"), *flags]) == 2
        assert "lora_B.bias" in capsys.readouterr().err and not (tmp_path / "x").exists()
    biased = make_base(tmp_path / "biased", attention_bias=True, mlp_bias=True)
    adapter = make_adapter(biased, tmp_path / "adapter", lora_bias=True)
    for flags in ([], ["--low_memory"]):
        out = tmp_path / f"out{len(flags)}"
        assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out), *flags]) == 0
        torch.testing.assert_close(merged_logits(out, IDS), reference_logits(biased, adapter, IDS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("damage", ["unknown-kind", "rank", "orphan-B"])
def test_adapter_tensors_the_merge_would_not_use_are_refused(base_and_adapter, tmp_path, damage, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    _, adapter = base_and_adapter
    copy = tmp_path / "adapter"
    shutil.copytree(adapter, copy)
    tensors = load_file(copy / "adapter_model.safetensors")
    key = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
    if damage == "unknown-kind":
        tensors[key.replace("lora_A.weight", "lora_C.weight")] = tensors[key].clone()
    elif damage == "rank":
        config = json.loads((copy / "adapter_config.json").read_text())
        (copy / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    else:
        del tensors[key]
    save_file(tensors, copy / "adapter_model.safetensors")
    assert merge_script.main(["--adapter_dir", str(copy), "--low_memory", "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert {"unknown-kind": "lora_C.weight", "rank": "r = 8", "orphan-B": "without its lora_A"}[damage] in err
    assert not (tmp_path / "out").exists()


def test_a_damaged_merged_output_is_not_trusted(base_and_adapter, tmp_path, capsys):
    _, adapter = base_and_adapter
    out = tmp_path / "out"
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out)]) == 0
    capsys.readouterr()
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out)]) == 0
    assert "every file intact" in capsys.readouterr().out
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out)]) == 2
    assert "model.safetensors differs from merge_report.json" in capsys.readouterr().err
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out), "--overwrite"]) == 2
    assert "model.safetensors was changed after it was written" in capsys.readouterr().err  # damage or edit: kept
    shutil.rmtree(out)  # as the message says
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out)]) == 0
    capsys.readouterr()
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(out)]) == 0
    assert "every file intact" in capsys.readouterr().out


def test_no_verify_is_reported_as_skipped(base_and_adapter, tmp_path, capsys):
    _, adapter = base_and_adapter
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "o"), "--no_verify"]) == 0
    assert "verification: skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "merge_report.json").read_text())
    assert report["verification"] == {"method": "skipped (--no_verify)", "passed": None}


@pytest.mark.parametrize(
    "config, fragment",
    [
        ("[1]", "holds a JSON list"),
        ('{"peft_type": "LORA", "r": 0, "lora_alpha": 8}', "no positive r"),
        ('\ufeff{"peft_type": "LORA", "lora_alpha": 8}', "no positive r"),
    ],
)
def test_a_damaged_adapter_config_is_one_line(base_and_adapter, tmp_path, capsys, config, fragment):
    import shutil

    _, adapter = base_and_adapter
    copy = tmp_path / "adapter"
    shutil.copytree(adapter, copy)
    (copy / "adapter_config.json").write_text(config, encoding="utf-8")
    assert merge_script.main(["--adapter_dir", str(copy), "--output_dir", str(tmp_path / "out")]) == 2
    assert fragment in capsys.readouterr().err


def test_an_adapter_on_another_base_of_the_same_shape_is_named_in_the_log_and_the_outputs(
    base_and_adapter, tmp_path, caplog, qa_file
):
    import bioqa.cli.train as train_script

    base, adapter = base_and_adapter
    other = make_base(tmp_path / "other-base", init_range=0.3)  # the same shapes, other weights
    caplog.set_level("WARNING", logger="bioqa")
    flags = ["--adapter_dir", str(adapter), "--base_model", str(other), "--output_dir", str(tmp_path / "m")]
    assert merge_script.main(flags) == 0
    assert f"was trained on {base} (its adapter_config.json) but is used with {other}" in caplog.text
    report = json.loads((tmp_path / "m" / "merge_report.json").read_text())
    assert report["base_is_the_adapters_own"] is False and report["adapter"]["trained_on"] == str(base)
    caplog.clear()
    out = tmp_path / "p"
    predict = ["--model_name_or_path", str(other), "--adapter_name_or_path", str(adapter), "--test_file", str(qa_file)]
    assert (
        train_script.main([*predict, "--output_dir", str(out), "--do_predict", "--generation_max_new_tokens", "2"]) == 0
    )
    assert "but is used with" in caplog.text
    assert json.loads((out / "run_manifest.json").read_text())["prediction_model"]["adapter_trained_on_another_base"]
    caplog.clear()
    assert merge_script.main(["--adapter_dir", str(adapter), "--output_dir", str(tmp_path / "own")]) == 0
    assert "but is used with" not in caplog.text
