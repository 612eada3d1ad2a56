"""Stage 1 on a manifest corpus (lda/01 --corpus manifest:PATH): every bad case counted, captions written,
splits chosen, reruns; and a user's folder of captioned images taken from make_manifest to a trained
network's features with the documented commands (README "Your own corpus")."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from PIL import Image as ImageRGBA
from PIL import Image

from texttopicnet.core import io, provenance
from texttopicnet.core.cli import run_main
from texttopicnet.text.preprocess import wordnet_available

build = load_script("lda/01_build_train_dict.py")
learn = load_script("lda/02_learn_lda.py")
label = load_script("lda/03_generate_labels.py")
make_manifest = load_script("data/make_manifest.py")

LEM = [] if wordnet_available() else ["--lemmatizer", "auto"]
THEMES = {
    "beach": "sand wave surf ocean shell sunset beach towel umbrella seagull".split(),
    "city": "street traffic building skyline taxi bridge tower subway neon crowd".split(),
    "forest": "tree moss trail fern mushroom pine owl river cabin deer".split(),
}
COLOURS = {"beach": (230, 200, 120), "city": (90, 90, 110), "forest": (40, 120, 50)}


def captioned_folder(root: Path, n_per_theme: int = 12, seed: int = 0, size: int = 72) -> list[tuple[str, str]]:
    """A user's folder: <theme>/<i>.jpg|png with a short <stem>.txt caption beside each; returns (image, caption)."""
    rng = np.random.RandomState(seed)
    out = []
    for theme, words in THEMES.items():
        for i in range(n_per_theme):
            folder = root / theme
            folder.mkdir(parents=True, exist_ok=True)
            arr = np.clip(np.array(COLOURS[theme]) + rng.randint(-30, 30, (size, size + 8, 3)), 0, 255)
            img = Image.fromarray(arr.astype(np.uint8))
            name = f"{i}.png" if i % 3 == 0 else f"{i}.jpg"  # PNGs too, as real web corpora have
            img.save(folder / name)
            caption = " ".join(rng.choice(words, size=4 + i % 4)) + (" #" + theme if i % 2 else "")
            (folder / f"{i}.txt").write_text(caption, encoding="utf-8")
            out.append((str(folder / name), caption))
    return out


def _png_rgba(path: Path, size=(80, 80)) -> None:
    """A transparent PNG: a red square on a fully transparent background."""
    arr = np.zeros((*size[::-1], 4), dtype=np.uint8)
    arr[20:40, 20:40] = (255, 0, 0, 255)
    Image.fromarray(arr, "RGBA").save(path)


def _palette_png(path: Path, size=(90, 70)) -> None:
    im = Image.new("P", size, 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    im.info["transparency"] = 0
    im.paste(1, (10, 10, 30, 30))
    im.save(path, transparency=0)


def _jpeg(path: Path, size=(96, 80), seed=0) -> None:
    arr = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, "JPEG")


@pytest.fixture()
def bad_corpus(tmp_path):
    """A manifest with one line per bad case, the reason each must be counted under written next to it."""
    root = tmp_path / "corpus"
    (root / "img").mkdir(parents=True)
    (root / "txt").mkdir()
    for i in range(4):
        _jpeg(root / "img" / f"ok{i}.jpg", seed=i)
    _png_rgba(root / "img" / "alpha.png")
    _palette_png(root / "img" / "palette.png")
    _jpeg(root / "img" / "tiny.jpg", size=(40, 90))
    (root / "img" / "garbage.jpg").write_bytes(b"this is not an image at all")
    data = (root / "img" / "ok0.jpg").read_bytes()
    (root / "img" / "cut.jpg").write_bytes(data[: data.index(b"\xff\xda")])  # cut at start of scan: no pixel
    (root / "txt" / "good.txt").write_text("a red kite over the dunes", encoding="utf-8")
    (root / "txt" / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "txt" / "blank.txt").write_text("  \n\t ", encoding="utf-8")
    (tmp_path / "secret.jpg").write_bytes((root / "img" / "ok1.jpg").read_bytes())
    (root / "img" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    lines = [
        ({"id": "a", "image": "img/ok0.jpg", "text": "dog"}, None),                  # one-word caption: kept
        ({"id": "b", "image": "img/ok1.jpg", "text_file": "txt/good.txt"}, None),
        ({"id": "c", "image": "img/alpha.png", "text": "red square", "split": "train"}, None),
        ({"id": "d", "image": "img/palette.png", "text": "blue square"}, None),
        ({"id": "e", "image": "img/ok2.jpg", "text": "dog"}, None),                  # same caption as a: one file
        ({"id": "f", "image": "img/ok3.jpg", "text": "held out", "split": "test"}, "split_not_selected"),
        ({"id": "g", "image": "../secret.jpg", "text": "escape"}, "outside_collection"),
        ({"id": "h", "image": "img/link.jpg", "text": "symlink out"}, "outside_collection"),
        ({"id": "i", "image": "img/ok0.jpg", "text_file": "../secret.txt"}, "outside_collection"),
        ({"id": "j", "image": "img/missing.jpg", "text": "gone"}, "image_missing"),
        ({"id": "k", "image": "img/garbage.jpg", "text": "junk"}, "corrupt"),
        ({"id": "l", "image": "img/cut.jpg", "text": "cut short"}, "undecodable"),
        ({"id": "m", "image": "img/tiny.jpg", "text": "tiny"}, "too_small"),
        ({"id": "n", "image": "img/ok0.jpg", "text_file": "txt/latin1.txt"}, "caption_not_utf8"),
        ({"id": "o", "image": "img/ok0.jpg", "text_file": "txt/blank.txt"}, "caption_empty"),
        ({"id": "p", "image": "img/ok0.jpg", "text_file": "txt/nope.txt"}, "caption_unreadable"),
        ({"id": "q", "image": "img/ok0.jpg", "text": "  "}, "no_text"),
        ({"id": "a", "image": "img/ok1.jpg", "text": "same id"}, "duplicate_id"),
        (b'{"image": "img/ok0.jpg", "text": ', "bad_json"),
    ]
    with open(root / "manifest.jsonl", "wb") as fh:
        for obj, _ in lines:
            fh.write((obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n")
    return root, lines


def test_manifest_bad_cases_counted_and_captions_written(bad_corpus, tmp_path):
    root, lines = bad_corpus
    out = tmp_path / "run"
    assert build.main(["--corpus", f"manifest:{root / 'manifest.jsonl'}", "--out", str(out), "--workers", "2",
                       "--no-progress"]) == 0
    counts = io.read_json(out / "pairs" / "filter_counts.json")
    expected: dict[str, int] = {}
    for _, reason in lines:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert {k: v for k, v in counts["removed"].items() if v} == expected
    assert counts["images"] == len(lines) and counts["kept"] + counts["removed_total"] == len(lines)
    assert counts["min_side"] == 64 and counts["splits"] == ["train", "unsplit"]
    assert counts["collection_root"] == str(root.resolve())

    rows = [line.split("\t") for line in io.read_lines(out / "pairs" / "pairs.tsv")]
    assert [r[2] for r in rows] == ["a", "b", "c", "d", "e"]
    assert [Path(r[0]).name for r in rows] == ["ok0.jpg", "ok1.jpg", "alpha.png", "palette.png", "ok2.jpg"]
    # Inline captions live under RUN/pairs/texts, named by the sha256 of their UTF-8 bytes (never the id).
    for (_img, art, _ident), (obj, _) in zip(rows, lines):
        if "text" in obj:
            digest = hashlib.sha256(obj["text"].encode("utf-8")).hexdigest()
            assert art == str(out / "pairs" / "texts" / digest[:2] / f"{digest}.txt")
            assert Path(art).read_text(encoding="utf-8") == obj["text"]
        else:
            assert art == str((root / obj["text_file"]).resolve())
    assert rows[0][1] == rows[4][1]  # one caption, one file
    assert counts["unique_articles"] == 4 and counts["inline_captions"] == 3
    meta = provenance.read_meta(out / "pairs")
    assert meta["corpus"] == "manifest" and str((root / "manifest.jsonl").resolve()) in meta["inputs"]
    assert not (out / "pairs" / "train_dict_ImageCLEF_Wikipedia.json").exists()


def test_splits_min_side_and_rerun_rules(bad_corpus, tmp_path, capsys):
    root, _ = bad_corpus
    out = tmp_path / "run"
    base = ["--corpus", f"manifest:{root / 'manifest.jsonl'}", "--out", str(out), "--workers", "1", "--no-progress"]
    assert build.main(base) == 0
    first = provenance.read_meta(out / "pairs")["finished"]
    capsys.readouterr()
    assert build.main(base) == 0
    assert "already done" in capsys.readouterr().out
    # Another split selection is another training set: the stage is redone, not skipped.
    assert build.main(base + ["--splits", "test"]) == 0
    assert "arguments changed" in capsys.readouterr().out
    assert [line.split("\t")[2] for line in io.read_lines(out / "pairs" / "pairs.tsv")] == ["f"]
    assert provenance.read_meta(out / "pairs")["finished"] != first
    assert build.main(base + ["--splits", "all", "--min-side", "40"]) == 0
    assert [line.split("\t")[2] for line in io.read_lines(out / "pairs" / "pairs.tsv")][-1] == "m"
    assert build.main(base + ["--splits", "all", "--min-side", "41"]) == 0
    ids = [line.split("\t")[2] for line in io.read_lines(out / "pairs" / "pairs.tsv")]
    assert ids == ["a", "b", "c", "d", "e", "f"]  # tiny.jpg is 40 px wide: too small at 41
    assert io.read_json(out / "pairs" / "filter_counts.json")["removed"]["too_small"] == 1
    # A changed manifest is a changed input: redone even with the same arguments.
    with open(root / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "z", "image": "img/ok3.jpg", "text": "late addition"}) + "\n")
    capsys.readouterr()
    assert build.main(base + ["--splits", "all", "--min-side", "41"]) == 0
    assert "already done" not in capsys.readouterr().out
    assert io.read_lines(out / "pairs" / "pairs.tsv")[-1].split("\t")[2] == "z"


def test_bad_corpus_arguments_are_one_line_errors(tmp_path, capsys):
    for argv in (["--corpus", "flickr"], ["--corpus", "manifest:"],
                 ["--corpus", f"manifest:{tmp_path / 'none.jsonl'}"]):
        with pytest.raises(SystemExit) as exc:
            run_main(build.main, argv + ["--out", str(tmp_path / "r")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")


def test_imageclef_rerun_redone_when_min_side_changes(demo_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--data-root", str(demo_corpus), "--out", str(out), "--workers", "2", "--no-progress"]
    assert build.main(base) == 0
    n = len(io.read_lines(out / "pairs" / "pairs.tsv"))
    capsys.readouterr()
    assert build.main(base + ["--min-side", "256"]) == 0  # the default, spelled out: nothing changed
    assert "already done" in capsys.readouterr().out
    assert build.main(base + ["--min-side", "300"]) == 0
    assert "arguments changed" in capsys.readouterr().out
    assert len(io.read_lines(out / "pairs" / "pairs.tsv")) < n


def test_folder_to_trained_network_to_features(tmp_path, capsys):
    """The README's "Your own corpus" commands, end to end on CPU, with a word-vector space."""
    train = load_script("cnn/02_train.py")
    pack = load_script("cnn/01_pack_images.py")
    extract = load_script("experiments/extract_features.py")
    photos = tmp_path / "my_photos"
    captioned = captioned_folder(photos)
    # Web images as they come: a transparent PNG and a palette PNG with transparency, small, short captions.
    (photos / "web").mkdir()
    _png_rgba(photos / "web" / "logo.png")
    (photos / "web" / "logo.txt").write_text("red kite logo", encoding="utf-8")
    _palette_png(photos / "web" / "icon.png")
    (photos / "web" / "icon.txt").write_text("blue tide icon", encoding="utf-8")
    captioned += [(str(photos / "web" / "icon.png"), "blue tide icon"), (str(photos / "web" / "logo.png"),
                                                                          "red kite logo")]
    run = tmp_path / "runs" / "mine"
    assert make_manifest.main(["folder", str(photos)]) == 0
    assert build.main(["--corpus", f"manifest:{photos / 'manifest.jsonl'}", "--out", str(run), "--no-progress",
                       "--workers", "2"]) == 0
    assert learn.main(["--out", str(run), "--space", "word2vec", "--space-option", "dim=16",
                       "--space-option", "min_count=1", "--space-option", "epochs=5", "--no-progress",
                       "--workers", "2", *LEM]) == 0
    assert label.main(["--out", str(run), "--workers", "2", "--no-progress"]) == 0
    y = np.load(run / "labels" / "labels.npy")
    assert y.shape == (len(captioned), 16) and y.dtype == np.float32
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)  # minshift_l2, the default for vectors
    assert pack.main(["--out", str(run), "--workers", "2"]) == 0
    packed = np.load(run / "packed" / "images.npy", mmap_mode="r")
    rows = {p: i for i, p in enumerate(io.read_lines(run / "packed" / "index.txt"))}
    assert len(rows) == len(captioned) and packed.shape[1:] == (256, 256, 3)
    logo, icon = packed[rows[str(photos / "web" / "logo.png")]], packed[rows[str(photos / "web" / "icon.png")]]
    assert (logo[:40, :40] == 255).all() and (logo[90:110, 90:110] == (255, 0, 0)).all()  # on white, red kept
    assert (icon[:20, :20] == 255).all() and (icon[60:80, 60:80] == (0, 0, 255)).all()
    assert train.main(["--out", str(run), "--preset", "demo", "--device", "cpu", "--iterations", "2",
                       "--batch-size", "4", "--eval-images", "4", "--checkpoint-every", "2", "--log-every", "1",
                       "--no-tensorboard"]) == 0
    weights = run / "train" / "model.safetensors"
    assert weights.is_file()
    listing = photos / "images.txt"
    io.write_lines(listing, [os.path.relpath(p, photos) for p, _ in captioned[:6]])
    assert extract.main(["--out", str(run), "--weights", str(weights), "--dataset", "list", "--image-list",
                         str(listing), "--layer", "fc7", "prob", "--device", "cpu", "--workers", "1",
                         "--batch-size", "4"]) == 0
    sha12 = io.read_lines(run / "train" / "model.sha256")[0][:12]
    feats = np.load(run / "features" / sha12 / "images_test_prob.npy")
    assert feats.shape == (6, 16) and np.isfinite(feats).all()
    assert np.load(run / "features" / sha12 / "images_test_fc7.npy").shape == (6, 4096)


def test_default_lda_on_a_manifest_corpus(tmp_path):
    """Every later stage runs unchanged on the manifest's pairs: the paper's LDA path with short captions."""
    photos = tmp_path / "photos"
    captioned = captioned_folder(photos, n_per_theme=10, seed=1)
    shutil.copy(photos / "beach" / "0.png", photos / "beach" / "no_caption.png")  # counted by make_manifest
    assert make_manifest.main(["folder", str(photos), "--categories-from-folders"]) == 0
    run = tmp_path / "run"
    assert build.main(["--corpus", f"manifest:{photos / 'manifest.jsonl'}", "--out", str(run), "--no-progress",
                       "--workers", "1"]) == 0
    assert learn.main(["--out", str(run), "--num-topics", "3", "--no-below", "2", "--passes", "20",
                       "--reproducible", "--workers", "1", "--no-progress", *LEM]) == 0
    assert label.main(["--out", str(run), "--workers", "1", "--no-progress"]) == 0
    y = np.load(run / "labels" / "labels.npy")
    index = io.read_lines(run / "labels" / "index.txt")
    assert y.shape == (len(captioned), 3) and sorted(index) == sorted(p for p, _ in captioned)
    assert ((y.sum(axis=1) > 0) & (y.sum(axis=1) <= 1 + 1e-5)).all()
    interchange = io.read_json(run / "labels" / "training_labels3.json")
    assert set(interchange) == {Path(p).relative_to(photos).as_posix() for p, _ in captioned}


def test_demo_corpus_captions_run_through_stage_1(demo_corpus, tmp_path):
    """The generator's Captions/ manifest: every edge case it lists is counted by stage 1, transparency
    is composited on white, and the kept count follows from the generator's own records."""
    import json

    from texttopicnet.data.images import load_rgb

    summary = json.loads((demo_corpus / "synthetic.json").read_text())["manifest"]
    manifest = demo_corpus / summary["manifest"]
    out = tmp_path / "run"
    assert build.main(["--corpus", f"manifest:{manifest}", "--out", str(out), "--workers", "1",
                       "--no-progress"]) == 0
    counts = io.read_json(out / "pairs" / "filter_counts.json")
    edge = summary["edge_cases"]
    removed = {k: v for k, v in counts["removed"].items() if v}
    # read plainly: one line that is not JSON, one leaving the folder, one corrupt image, one Latin-1 caption
    assert removed.get("bad_json") == len(edge["not_json"]) == 1
    assert removed.get("outside_collection") == len(edge["outside"]) == 1
    assert removed.get("corrupt") == len(edge["corrupt"]) == 1
    assert removed.get("caption_not_utf8") == len(edge["non_utf8_caption"]) == 1
    # stage 1 reads the train split (and unsplit lines) by default; every 5th image is test
    assert removed.get("split_not_selected") == summary["images"] - summary["train_images"]
    assert set(removed) == {"bad_json", "outside_collection", "corrupt", "caption_not_utf8", "split_not_selected"}
    assert counts["kept"] == summary["train_images"] - 2
    kept = {Path(line.split("\t")[0]).resolve() for line in io.read_lines(out / "pairs" / "pairs.tsv")}
    rgba = [demo_corpus / p for p in edge["rgba_png"] if (demo_corpus / p).resolve() in kept]
    assert rgba and all(ImageRGBA.open(p).mode == "RGBA" for p in rgba)
    corner = __import__("numpy").asarray(load_rgb(rgba[0]))[0, 0]
    assert tuple(int(c) for c in corner) == (255, 255, 255)  # transparent corner -> white
