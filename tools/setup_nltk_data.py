"""Install the NLTK data that METEOR needs (WordNet 3.0 and punkt_tab), without the internet if need be.

Run by `make setup`. The data goes to ./nltk_data (git-ignored), which `metrics_utils` adds to NLTK's
search path. For each resource, in order:
  1. it is already on NLTK's search path: keep it;
  2. `nltk.download` reaches its server (a connected machine): download it;
  3. offline: WordNet from Debian's packages `wordnet-base` + `wordnet-sense-index` (fetched with
     `apt-get download` and unpacked with `dpkg-deb`, so the system is left unchanged), plus the
     `lexnames` file NLTK's reader needs, written from the table in the lexnames(5WN) man page those
     packages ship; punkt_tab from the PyPI wheel of llama-index-core 0.14.25, which bundles NLTK's
     files (downloaded with `pip download --no-deps`, only that folder extracted, never installed).
A second run finds everything in place and changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bioqa.io.paths import nltk_data_dir  # BIOQA_NLTK_DATA / BIOQA_HOME move it

DEFAULT_DIR = nltk_data_dir()
WORDNET = "corpora/wordnet"
PUNKT_TAB = "tokenizers/punkt_tab/english/"
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
WHEEL = "llama-index-core==0.14.25"
# sha256 of llama_index_core-0.14.25-py3-none-any.whl on PyPI: a changed file is refused.
WHEEL_SHA256 = "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1"
WHEEL_PUNKT_DIR = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/"
# lexnames(5WN): the third field is the syntactic category, given by the file name's prefix.
POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class SetupError(RuntimeError):
    """A resource could not be obtained by any route."""


def is_present(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        return False
    return True


def try_nltk_download(package: str, data_dir: Path) -> bool:
    import nltk

    # Offline, the downloader prints a multi-line URL error per package; one line of ours says it.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return bool(nltk.download(package, download_dir=str(data_dir), quiet=True, raise_on_error=False))


def run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SetupError(f"`{' '.join(cmd)}` failed: {detail[-1] if detail else result.returncode}")


def fetch_debian_packages(work: Path) -> Path:
    """Download and unpack the WordNet .debs into work/root; return that root."""
    try:
        run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=work)
    except (SetupError, FileNotFoundError) as first:
        if shutil.which("apt-get") is None:
            raise SetupError("apt-get is not available (not a Debian/Ubuntu system)") from first
        if os.geteuid() != 0:
            raise
        # A fresh container often has empty package lists: refresh them once (root only).
        run(["apt-get", "update", "-q"], cwd=work)
        run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=work)
    root = work / "root"
    for deb in sorted(work.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)], cwd=work)
    return root


def lexnames_from_man_page(man_page: Path) -> str:
    """The 45 lines `NN<TAB>name<TAB>pos` of WordNet's lexnames file, from lexnames(5WN)'s table."""
    text = gzip.open(man_page, "rt", encoding="utf-8").read()
    rows = re.findall(r"^(\d\d)\t(\w+\.\w+)\s*\t", text, flags=re.MULTILINE)
    if len(rows) != 45:
        raise SetupError(f"expected 45 lexicographer files in {man_page}, found {len(rows)}")
    return "".join(f"{num}\t{name}\t{POS_NUMBER[name.split('.')[0]]}\n" for num, name in rows)


def install_wordnet_from_debian(data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = fetch_debian_packages(Path(tmp))
        staging = Path(tmp) / "wordnet"
        shutil.copytree(root / "usr/share/wordnet", staging)
        man_page = root / "usr/share/man/man5/lexnames.5WN.gz"
        (staging / "lexnames").write_text(lexnames_from_man_page(man_page), encoding="utf-8")
        target = data_dir / WORDNET
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging), target)


def install_punkt_tab_from_wheel(data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL]
        run(cmd, cwd=Path(tmp))
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SetupError(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
        staging = Path(tmp) / "extract"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(WHEEL_PUNKT_DIR) and not member.endswith("/"):
                    archive.extract(member, staging)
        target = data_dir / "tokenizers/punkt_tab"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging / WHEEL_PUNKT_DIR), target)


RESOURCES = (
    # (resource path, nltk.download package, offline installer)
    (WORDNET, "wordnet", install_wordnet_from_debian),
    (PUNKT_TAB, "punkt_tab", install_punkt_tab_from_wheel),
)


def ensure_resource(resource: str, package: str, offline_install, data_dir: Path) -> str:
    """Make one resource findable; return how it was obtained."""
    if is_present(resource):
        return "already present"
    if try_nltk_download(package, data_dir) and is_present(resource):
        return "nltk.download"
    print(f"nltk data: {package}: nltk.download cannot reach its server; installing it offline")
    offline_install(data_dir)
    if not is_present(resource):
        raise SetupError(f"{resource} is still not found after the offline install")
    return "offline install"


def check_meteor() -> None:
    """Score NLTK's own METEOR docstring example; 0.6944 proves WordNet and punkt_tab both work."""
    from nltk import word_tokenize
    from nltk.translate.meteor_score import single_meteor_score

    hyp = "It is a guide to action which ensures that the military always obeys the commands of the party"
    ref = "It is a guide to action that ensures that the military will forever heed Party commands"
    score = single_meteor_score(word_tokenize(ref), word_tokenize(hyp))
    if round(score, 4) != 0.6944:
        raise SetupError(f"METEOR self-check gave {score:.4f}, expected 0.6944")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DIR, help="where to put the data")
    args = parser.parse_args(argv)
    import nltk

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    nltk.data.path.insert(0, str(data_dir))
    try:
        for resource, package, installer in RESOURCES:
            how = ensure_resource(resource, package, installer, data_dir)
            print(f"nltk data: {resource.rstrip('/')}: {how}")
        check_meteor()
    except (SetupError, OSError) as exc:
        print(
            f"error: NLTK data for METEOR: {exc}; install WordNet 3.0 and punkt_tab with "
            f"nltk.download on a connected machine and copy them into {data_dir}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
