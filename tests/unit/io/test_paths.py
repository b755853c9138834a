"""bioqa.io.paths: the local data folders resolve in one place, and environment variables move them."""

import os
import subprocess
import sys

import pytest

from bioqa.io import paths
from bioqa.io.paths import DEFAULT_MODEL
from bioqa.train import modeling
from helpers import ROOT


def test_environment_variables_override_most_specific_first(monkeypatch, tmp_path):
    for name in ("BIOQA_HOME", "BIOQA_NLTK_DATA", "BIOQA_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert paths.nltk_data_dir() == ROOT / "nltk_data" and paths.models_dir() == ROOT / "models"
    monkeypatch.setenv("BIOQA_HOME", str(tmp_path))
    assert (
        paths.nltk_data_dir() == tmp_path / "nltk_data"
        and paths.local_default_model() == tmp_path / "models" / "SmolLM2-135M-Instruct"
    )
    monkeypatch.setenv("BIOQA_NLTK_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("BIOQA_MODELS_DIR", str(tmp_path / "weights"))
    assert paths.nltk_data_dir() == tmp_path / "mine" and paths.models_dir() == tmp_path / "weights"


def test_the_offline_default_model_is_found_where_bioqa_models_dir_says(monkeypatch, tmp_path):
    (tmp_path / "SmolLM2-135M-Instruct").mkdir()
    (tmp_path / "SmolLM2-135M-Instruct" / "config.json").write_text("{}")
    monkeypatch.setenv("BIOQA_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(modeling, "hub_reachable", lambda: False)
    assert modeling.resolve_model_name(DEFAULT_MODEL) == str(tmp_path / "SmolLM2-135M-Instruct")


def test_meteor_reads_nltk_data_from_bioqa_nltk_data(tmp_path):
    code = (
        "import metrics_utils\ntry:\n    print(metrics_utils.compute_metrics(['a b'], ['a b'])['meteor'])\n"
        "except metrics_utils.MissingNLTKDataError:\n    print('missing')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOQA_", "NLTK_DATA"))}
    found = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "BIOQA_NLTK_DATA": str(ROOT / "nltk_data")},
    )
    missing = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "BIOQA_NLTK_DATA": str(tmp_path / "none")},
    )
    assert found.stdout.strip() not in ("", "missing") and float(found.stdout) > 0.9, found.stderr[-2000:]
    assert missing.stdout.strip() == "missing", missing.stderr[-2000:]


@pytest.mark.parametrize("variable", ["BIOQA_NLTK_DATA", "BIOQA_HOME"])
def test_missing_nltk_data_names_the_variable_and_where_it_looked(variable, tmp_path, monkeypatch):
    from bioqa.evaluate import scorers

    monkeypatch.setenv(variable, str(tmp_path / "bogus"))
    monkeypatch.setattr(scorers, "nltk_data_available", lambda: False)
    with pytest.raises(scorers.MissingNLTKDataError, match=f"{tmp_path / 'bogus'}.* \\(.*from {variable}; unset it"):
        scorers.require_nltk_data()


@pytest.mark.parametrize("variable", ["BIOQA_MODELS_DIR", "BIOQA_HOME"])
def test_a_missing_default_model_names_the_variable_and_where_it_looked(variable, tmp_path, monkeypatch):
    from bioqa.errors import InputError
    from bioqa.train import modeling

    monkeypatch.setenv(variable, str(tmp_path / "bogus"))
    monkeypatch.setattr(modeling, "hub_reachable", lambda: False)
    with pytest.raises(InputError, match=f"no local copy in {tmp_path / 'bogus'}.*from {variable}; unset it"):
        modeling.resolve_model_name(modeling.DEFAULT_MODEL)
