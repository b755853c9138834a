"""The NLTK data set-up: the order of its sources, the lexnames file it writes, and idempotence."""

import gzip
import subprocess
from pathlib import Path

import pytest
import setup_nltk_data as setup

from helpers import ROOT


def test_present_resource_is_kept_without_download(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(setup, "is_present", lambda resource: True)
    monkeypatch.setattr(setup, "try_nltk_download", lambda *a: calls.append("download"))
    assert (
        setup.ensure_resource("corpora/wordnet", "wordnet", lambda d: calls.append("offline"), tmp_path)
        == "already present"
    )
    assert calls == []


def test_download_is_tried_before_the_offline_route(monkeypatch, tmp_path):
    state = {"present": False}
    monkeypatch.setattr(setup, "is_present", lambda resource: state["present"])

    def download(package, data_dir):
        state["present"] = True
        return True

    monkeypatch.setattr(setup, "try_nltk_download", download)
    assert setup.ensure_resource("corpora/wordnet", "wordnet", pytest.fail, tmp_path) == "nltk.download"


def test_offline_route_when_download_fails(monkeypatch, tmp_path):
    state = {"present": False}
    monkeypatch.setattr(setup, "is_present", lambda resource: state["present"])
    monkeypatch.setattr(setup, "try_nltk_download", lambda *a: False)
    monkeypatch.setattr(setup, "run", pytest.fail)  # no external command in this test
    assert setup.ensure_resource("x", "x", lambda d: state.update(present=True), tmp_path) == "offline install"
    state["present"] = False
    with pytest.raises(setup.SetupError, match="still not found"):
        setup.ensure_resource("x", "x", lambda d: None, tmp_path)


def man_page(rows: list[tuple[str, str]]) -> str:
    table = "\n".join(f"{num}\t{name}\tsome description  " for num, name in rows)
    return f".TS\ncenter ;\nl l l.\n\\fBFile Number\\fP\t\\fBName\\fP\t\\fBContents\\fP\n_\n{table}\n.TE\n"


def test_lexnames_from_man_page_table(tmp_path):
    names = (
        ["adj.all", "adj.pert", "adv.all"]
        + [f"noun.n{i}" for i in range(26)]
        + [f"verb.v{i}" for i in range(15)]
        + ["adj.ppl"]
    )
    page = tmp_path / "lexnames.5WN.gz"
    page.write_bytes(gzip.compress(man_page([(f"{i:02d}", n) for i, n in enumerate(names)]).encode()))
    lines = setup.lexnames_from_man_page(page).splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[2] == "02\tadv.all\t4"
    assert lines[3] == "03\tnoun.n0\t1" and lines[29] == "29\tverb.v0\t2" and lines[44] == "44\tadj.ppl\t3"
    page.write_bytes(gzip.compress(man_page([("00", "adj.all")]).encode()))
    with pytest.raises(setup.SetupError, match="expected 45"):
        setup.lexnames_from_man_page(page)


def test_installed_lexnames_matches_wordnet_3_0():
    import nltk

    import metrics_utils

    assert metrics_utils.nltk_data_available()
    lexnames = Path(str(nltk.data.find("corpora/wordnet"))) / "lexnames"
    if not lexnames.exists():
        pytest.skip("WordNet came from nltk.download, which ships its own lexnames")
    lines = lexnames.read_text().splitlines()
    assert len(lines) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[18] == "18\tnoun.person\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


def test_setup_is_up_to_date_after_make_setup():
    """`make -q` exits 0 only when every set-up target is current: a second run does nothing."""
    result = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
