"""Model cards in every training output and merged folder; --push_to_hub tested at the upload call."""

import json

import numpy as np
import pytest
import sacrebleu
from huggingface_hub import ModelCard

from bioqa import model_card
from helpers import TRAIN, run_cli, run_flags


def card_of(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    return ModelCard(text).data.to_dict(), text


def test_a_training_output_has_a_hub_model_card_with_recipe_data_and_intervals(trained, tiny_model_dir, qa_file):
    out, _ = trained
    data, text = card_of(out)
    assert data["library_name"] == "peft" and data["base_model"] == tiny_model_dir.name
    assert {"bioqa-lora", "lora", "peft"} <= set(data["tags"]) and "license" not in data  # the tiny base has none
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_sources"]["train"]["sha256"] in text and "| lora_r | `8` |" in text
    assert f"| generation dtype | {manifest['device']['generation_dtype']} |" in text
    assert "### Validation" in text and "### Test" in text and "AutoPeftModelForCausalLM.from_pretrained" in text
    test_scores = json.loads((out / "predict_metrics.json").read_text())["scores"]["rougeL"]
    assert test_scores["ci95"] is None  # six test questions: too few for a bootstrap (at least 10)
    assert f"| ROUGE-L | {test_scores['score']:.4g} | n/a |" in text
    assert (out / manifest["final_evaluation"]).is_file()  # the validation scores come from this file


def test_validation_intervals_are_the_bootstrap_of_the_final_evaluation(trained):
    out, _ = trained
    rows = [
        json.loads(line)
        for line in (out / json.loads((out / "run_manifest.json").read_text())["final_evaluation"]).open()
    ]
    assert model_card.evaluation_of(rows, 200, seed=3)["scores"]["meteor"]["ci95"] is None  # 6: too few
    rows = [{**row, "id": f"{row['id']}-{copy}"} for copy in range(2) for row in rows]  # 12: enough
    evaluation = model_card.evaluation_of(rows, 200, seed=3)
    # against sacreBLEU itself, and a percentile bootstrap written out here over the rows' own per-example METEOR
    bleu = sacrebleu.corpus_bleu([r["prediction"] for r in rows], [[r["reference"] for r in rows]]).score
    assert evaluation["scores"]["bleu"]["score"] == pytest.approx(bleu)
    meteor, rng = np.array([r["meteor"] for r in rows]), np.random.default_rng(3)
    means = [meteor[rng.integers(0, len(rows), size=len(rows))].mean() for _ in range(200)]
    expected = np.percentile(means, [2.5, 97.5])
    assert evaluation["scores"]["meteor"]["ci95"] == pytest.approx(list(expected), abs=1e-6)
    assert evaluation["num_examples"] == len(rows)


def test_the_licence_comes_from_the_base_models_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a model\n", encoding="utf-8")
    assert model_card.base_license(str(tmp_path)) == "apache-2.0"
    (tmp_path / "README.md").write_text("# no front matter\n", encoding="utf-8")
    assert model_card.base_license(str(tmp_path)) is None
    assert model_card.base_license(str(tmp_path / "absent")) is None


def test_a_merged_folder_has_a_transformers_card_with_the_verification(trained, merged):
    out, (merged, _) = trained[0], merged
    data, text = card_of(merged)
    assert data["library_name"] == "transformers" and data["base_model"] == card_of(out)[0]["base_model"]
    report = json.loads((merged / "merge_report.json").read_text())
    assert f"| top1_agreement | {report['verification']['top1_agreement']} |" in text
    assert report["adapter"]["sha256"] in text and "AutoModelForCausalLM.from_pretrained" in text
    assert "README.md" in report["files"]  # the card is hashed with the rest: a damaged one is noticed
    assert "## The adapter" in text and "#### Test" in text  # the adapter's recipe, data and evaluation come along


class FakeHub:
    """The Hub's API at the network boundary: records what would be uploaded, and what the folder held then."""

    calls: list = []
    fail = False

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeHub.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, folder_path, repo_id, allow_patterns, **kwargs):
        from pathlib import Path

        if FakeHub.fail:
            raise ConnectionError("connection reset by peer")
        held = sorted(p.name for p in Path(folder_path).iterdir())
        FakeHub.calls.append(("upload_folder", repo_id, {"files": list(allow_patterns), "held": held, **kwargs}))


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub

    from bioqa import merge_run, run_files

    FakeHub.calls, FakeHub.fail = [], False
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(run_files, "hub_reachable", lambda: True)
    monkeypatch.setattr(merge_run, "hub_reachable", lambda: True)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    return FakeHub


def train_args(tiny_model_dir, qa_file, out, *extra):
    return [
        *run_flags(tiny_model_dir, qa_file, out),
        "--do_train",
        *TRAIN,
        "--max_steps",
        "8",
        "--push_to_hub",
        "--hub_model_id",
        "me/bioqa-test",
        *extra,
    ]


def test_push_to_hub_uploads_the_complete_output_once_at_the_end(fake_hub, tiny_model_dir, qa_file, tmp_path):
    from bioqa.cli import train

    out = tmp_path / "run"
    assert train.main(train_args(tiny_model_dir, qa_file, out, "--do_predict")) == 0
    assert [c[0] for c in fake_hub.calls] == ["create_repo", "upload_folder"]  # never a checkpoint on the way
    _, repo, upload = fake_hub.calls[1]
    assert repo == "me/bioqa-test"
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "run_manifest.json",
        "metrics.json",
        "predict_metrics.json",
        "tokenizer.json",
    } <= set(upload["files"])
    assert not [f for f in upload["files"] if f.startswith(("checkpoint", "predictions", "trainer_state", "."))]
    assert "### Test" in (out / "README.md").read_text()  # pushed after --do_predict completed the card
    assert set(upload["files"]) <= set(upload["held"])


def test_a_failed_upload_keeps_the_finished_output_and_says_how_to_upload(
    fake_hub, tiny_model_dir, qa_file, tmp_path, capsys
):
    from bioqa.cli import train

    fake_hub.fail = True
    out = tmp_path / "run"
    assert train.main(train_args(tiny_model_dir, qa_file, out)) == 1
    err = capsys.readouterr().err
    assert "the upload of" in err and f"hf upload me/bioqa-test {out}" in err
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()


def test_push_to_hub_without_a_token_is_refused_before_training(
    fake_hub, tiny_model_dir, qa_file, tmp_path, monkeypatch, capsys
):
    from huggingface_hub import constants

    from bioqa.cli import train

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no stored login either
    out = tmp_path / "run"
    assert train.main(train_args(tiny_model_dir, qa_file, out)) == 2
    assert "--push_to_hub needs a Hugging Face token" in capsys.readouterr().err
    assert not out.exists() and fake_hub.calls == []


def test_push_to_hub_on_a_run_that_trains_nothing_is_refused(fake_hub, tiny_model_dir, qa_file, tmp_path, capsys):
    from bioqa.cli import train

    out = tmp_path / "zero-shot"
    command = [*run_flags(tiny_model_dir, qa_file, out), "--do_predict", "--push_to_hub", "--hub_model_id", "me/x"]
    assert train.main(command) == 2
    assert "--push_to_hub uploads the adapter a run trains; add --do_train, or drop --push_to_hub" in (
        capsys.readouterr().err
    )
    assert not out.exists() and fake_hub.calls == []


def test_push_to_hub_offline_is_refused_before_anything_loads(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "run"
    result = run_cli(*train_args(tiny_model_dir, qa_file, out))  # run_cli sets HF_HUB_OFFLINE=1
    assert result.returncode == 2 and not out.exists()
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --push_to_hub: the Hugging Face Hub cannot be reached from here; run without --push_to_hub")
    )


def test_merge_pushes_the_verified_merged_folder(fake_hub, trained, tmp_path):
    from bioqa.cli import merge

    out, _ = trained
    merged = tmp_path / "merged"
    assert merge.main(["--adapter_dir", str(out), "--output_dir", str(merged), "--push_to_hub"]) == 0
    _, repo, upload = fake_hub.calls[-1]
    assert repo == "merged" and {"model.safetensors", "config.json", "README.md", "merge_report.json"} <= set(
        upload["files"]
    )
