"""CNN-VLM benchmark: saliency maps per second on the CPU (CaffeNet conv5 at 227 px, VGG-16 conv5_3 at 224 px).

A map is the whole path for one image: the network's forward pass to the layer, the
projection, the four 2-layer LSTM language models, the unnaturalness map and the release's
post-processing (upsample, pad, blur). Ours runs each direction's LSTM over every column (or
row) of every image of the batch at once (``nn.LSTM`` on (H, N*W, k) sequences); the naive
baseline, measured in the same run, does the same arithmetic one image at a time and steps an
``LSTMCell`` through every position of every sequence in a Python loop. PCA dimensions are the
release's ceil(C/2) (128 for CaffeNet conv5, 256 for VGG-16 conv5_3); weights are random (speed
does not depend on them). Rows at torch's default thread count and at 1 thread (many small
steps: one thread is often faster, and much faster on a busy machine).

    python benchmarks/bench_vlm.py            # prints the rows as JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import median_time, row
from texttopicnet.networks import backbones
from texttopicnet.vlm import features
from texttopicnet.vlm import model as vm
from texttopicnet.vlm.naturalness import NaturalnessModel
from texttopicnet.vlm.saliency import layer_stride, postprocess

CASES = (("caffenet", "conv5", 256, 227), ("vgg16", "conv5_3", 512, 224))


def build(arch: str, layer: str, channels: int) -> NaturalnessModel:
    net = backbones.build(arch, 40, seed=0).eval()
    k = features.num_components(channels)
    q, _ = torch.linalg.qr(torch.randn(channels, k, generator=torch.Generator().manual_seed(0)))
    proj = features.Projection(torch.zeros(channels), torch.ones(channels), torch.zeros(channels), q.T.contiguous())
    torch.manual_seed(0)
    return NaturalnessModel(net, arch, {layer: proj}, vm.VLM({layer: k}))


def ours(m: NaturalnessModel, images: np.ndarray, layer: str) -> list:
    return m.saliency(images, layer)[1]


def _cell_scan(lm: vm.DirectionalLM, seq: torch.Tensor, cells) -> torch.Tensor:
    """seq (T, dim) -> predictions (T, dim), one LSTMCell step per position per layer."""
    x = seq
    for cell in cells:
        h = torch.zeros(1, cell.hidden_size)
        c = torch.zeros(1, cell.hidden_size)
        outs = []
        for t in range(x.shape[0]):
            h, c = cell(x[t:t + 1], (h, c))
            outs.append(h)
        x = torch.cat(outs)
    return lm.out(x)


def _cells(lm: vm.DirectionalLM) -> list[torch.nn.LSTMCell]:
    out = []
    for layer in range(2):
        w = getattr(lm.lstm, f"weight_ih_l{layer}")
        cell = torch.nn.LSTMCell(w.shape[1], lm.lstm.hidden_size)
        cell.weight_ih.data.copy_(w)
        cell.weight_hh.data.copy_(getattr(lm.lstm, f"weight_hh_l{layer}"))
        cell.bias_ih.data.copy_(getattr(lm.lstm, f"bias_ih_l{layer}"))
        cell.bias_hh.data.copy_(getattr(lm.lstm, f"bias_hh_l{layer}"))
        out.append(cell)
    return out


@torch.no_grad()
def naive(m: NaturalnessModel, images: np.ndarray, layer: str) -> list:
    lv = m.vlm.layer(layer)
    cells = {d: _cells(lm) for d, lm in lv.lms.items()}
    maps = []
    for img in images:
        z = m.project(m.taps(m.preprocess(img[None])))[layer][0]  # (k, H, W)
        _, h, w = z.shape
        preds = {d: torch.zeros_like(z) for d in vm.DIRECTIONS}
        for d, lm in lv.lms.items():
            if d in ("down", "up"):
                for col in range(w):
                    seq = z[:, :, col].T
                    p = _cell_scan(lm, seq.flip(0), cells[d]).flip(0) if d == "up" else _cell_scan(lm, seq, cells[d])
                    preds[d][:, :, col] = p.T
            else:
                for r in range(h):
                    seq = z[:, r, :].T
                    p = _cell_scan(lm, seq.flip(0), cells[d]).flip(0) if d == "left" else _cell_scan(lm, seq, cells[d])
                    preds[d][:, r, :] = p.T
        errs = vm.weighted_errors(z[None], {d: p[None] for d, p in preds.items()})
        raw = vm.unnaturalness_map(errs)[0].numpy()
        maps.append(postprocess(raw, img.shape[:2], layer_stride(img.shape[0], raw.shape[0] + 1)))
    return maps


def bench_case(arch: str, layer: str, channels: int, size: int, quick: bool, threads: int) -> dict:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        m = build(arch, layer, channels)
        n = 2 if quick else 4
        images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        a, b = ours(m, images, layer), naive(m, images[:1], layer)
        assert np.allclose(a[0], b[0], atol=1e-4), "the naive baseline computes another map"
        repeat = 1 if quick else 2
        t_ours = median_time(lambda: ours(m, images, layer), repeat=repeat)
        t_naive = median_time(lambda: naive(m, images, layer), repeat=repeat)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    name = f"vlm_maps_{arch}{size}" + ("_1thread" if threads == 1 else "")
    return row(name, f"{arch} {layer} maps at {size} px, {used} thread(s), batch {n}", t_ours,
               t_naive, items=n, unit="maps",
               notes=f"PCA dims {features.num_components(channels)}; forward to {layer} + 4 LSTM LMs + post-processing;"
                     f" baseline: one image at a time, LSTMCell stepped per position in Python")


def run(workdir: Path, quick: bool) -> list[dict]:
    rows = []
    for arch, layer, channels, size in CASES:
        for threads in (0, 1):
            rows.append(bench_case(arch, layer, channels, size, quick, threads))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(ROOT / "benchmarks" / "_work", "--quick" in sys.argv), indent=2))
