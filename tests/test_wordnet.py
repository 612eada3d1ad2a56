"""Offline WordNet install (texttopicnet.text.wordnet): Debian's files copied, lexnames written, NLTK reads them."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from texttopicnet.core.errors import UserError
from texttopicnet.text import wordnet

ROOT = Path(__file__).resolve().parent.parent
MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")


@pytest.fixture(scope="module")
def debian_wordnet() -> Path:
    if not all((wordnet.DEBIAN_DIR / n).is_file() for n in wordnet.DATABASE_FILES):
        pytest.skip("Debian's wordnet-base + wordnet-sense-index are not installed (/usr/share/wordnet)")
    return wordnet.DEBIAN_DIR


def test_lexnames_table_format():
    lines = wordnet.lexnames_table().splitlines()
    assert len(lines) == 45
    for i, line in enumerate(lines):
        number, name, category = line.split("\t")
        assert number == f"{i:02d}"
        assert category == {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}[name.split(".")[0]]
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


def test_lexnames_table_equals_the_man_page():
    if not MAN_PAGE.is_file():
        pytest.skip(f"{MAN_PAGE} not installed (Debian's wordnet-base ships it)")
    man = gzip.decompress(MAN_PAGE.read_bytes()).decode("utf-8", "replace")
    rows = re.findall(r"^(\d\d)\t(\S+)", man, flags=re.M)  # the table: "NN<TAB>name<TAB>description"
    assert [f"{n}\t{name}" for n, name in rows] == ["\t".join(line.split("\t")[:2])
                                                    for line in wordnet.lexnames_table().splitlines()]


def test_install_copies_checks_and_is_idempotent(debian_wordnet, tmp_path):
    logs = []
    target = wordnet.install(tmp_path / "nltk_data", download=False, log=logs.append)
    assert target == tmp_path / "nltk_data" / "corpora" / "wordnet"
    for name in wordnet.DATABASE_FILES:
        assert (target / name).read_bytes() == (debian_wordnet / name).read_bytes(), name
    assert (target / "lexnames").read_text() == wordnet.lexnames_table()
    assert wordnet.check_folder(target) is None
    assert [p.name for p in target.parent.iterdir()] == ["wordnet"]  # no staging folder left behind
    stamp = (target / "data.noun").stat().st_mtime_ns
    assert wordnet.install(tmp_path / "nltk_data", download=False, log=logs.append) == target
    assert "already installed" in logs[-1] and (target / "data.noun").stat().st_mtime_ns == stamp

    # NLTK itself, in a fresh process that finds the folder through NLTK_DATA.
    code = ("from nltk.stem import WordNetLemmatizer as W; l = W().lemmatize; "
            "print(' '.join(l(w) for w in ['dates', 'was', 'came', 'earlier', 'geese']))")
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "nltk_data")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["date", "wa", "came", "earlier", "goose"]


def test_incomplete_install_is_replaced(debian_wordnet, tmp_path):
    target = tmp_path / "corpora" / "wordnet"
    target.mkdir(parents=True)
    (target / "index.noun").write_text("truncated")
    assert "missing" in wordnet.check_folder(target)
    wordnet.install(tmp_path, download=False, log=lambda m: None)
    assert wordnet.check_folder(target) is None


def test_damaged_lexnames_is_detected(debian_wordnet, tmp_path):
    target = wordnet.install(tmp_path, download=False, log=lambda m: None)
    (target / "lexnames").write_text("00\tadj.all\t3\n05\tnoun.act\t1\n")  # numbering broken
    assert wordnet.check_folder(target) is not None


def test_no_source_and_no_download_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="wordnet-base wordnet-sense-index"):
        wordnet.install(tmp_path / "data", source=tmp_path / "nowhere", download=False, log=lambda m: None)
    assert not (tmp_path / "data" / "corpora" / "wordnet").exists()


def test_default_folder_honours_nltk_data(monkeypatch, tmp_path):
    monkeypatch.setenv("NLTK_DATA", os.pathsep.join([str(tmp_path / "first"), str(tmp_path / "second")]))
    assert wordnet.default_data_dir() == tmp_path / "first"
    monkeypatch.delenv("NLTK_DATA")
    import nltk

    (tmp_path / "a_file").write_text("x")  # a folder cannot be made under a file
    monkeypatch.setattr(nltk.data, "path", ["", str(tmp_path / "a_file" / "nltk_data"), str(tmp_path / "ok")])
    assert wordnet.default_data_dir() == tmp_path / "ok"


def test_command_line(debian_wordnet, tmp_path):
    assert wordnet.main(["--install", str(tmp_path), "--no-download"]) == 0
    assert wordnet.main(["--install", str(tmp_path / "x"), "--source", str(tmp_path / "none"), "--no-download"]) == 2


def test_fast_noun_lemmatizer_equals_nltk_wordnetlemmatizer(shared_data):
    """Our lemma-only reader (no multilingual sense map) against NLTK's own WordNetLemmatizer,
    word for word over the vocabulary of real Wikipedia texts plus irregular forms."""
    import re

    from nltk.stem import WordNetLemmatizer

    try:
        reference = WordNetLemmatizer().lemmatize
        reference("dogs")
    except LookupError:
        pytest.skip("NLTK WordNet data not installed (python -m texttopicnet.text.wordnet --install)")
    words = {"was", "dates", "geese", "mice", "aardwolves", "abaci", "us", "corpora", "criteria", "people",
             "analyses", "hardrock", "ﬁsh", "ünïcode", "42nd", "_", "x"}
    for f in sorted((shared_data / "wikipedia" / "texts").glob("*.xml"))[:60]:
        words.update(re.findall(r"\w+", f.read_text(encoding="utf-8", errors="replace").lower()))
    ours = wordnet.noun_lemmatizer()
    differ = [w for w in sorted(words) if ours(w) != reference(w)]
    assert len(words) > 5000 and differ == []
