"""Crops and flips of uint8 batches: every output is a real crop of its own input, per sample."""

from __future__ import annotations

import pytest
import torch

from texttopicnet.training.augment import center_crop, crop_flip, random_crop_flip, random_crop_params, ten_crop


def _batch(n=6, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


def _find(img_chw: torch.Tensor, crop_img: torch.Tensor, c: int):
    """Every (top, left, flipped) whose crop of img equals crop_img (random pixels: exactly one)."""
    hits = []
    for t in range(img_chw.shape[1] - c + 1):
        for l in range(img_chw.shape[2] - c + 1):
            window = img_chw[:, t:t + c, l:l + c]
            if torch.equal(window, crop_img):
                hits.append((t, l, False))
            if torch.equal(window.flip(-1), crop_img):
                hits.append((t, l, True))
    return hits


def test_random_crop_flip_outputs_are_crops_of_their_own_image():
    x = _batch()
    out = random_crop_flip(x, crop=12, generator=torch.Generator().manual_seed(1))
    assert out.shape == (6, 3, 12, 12) and out.dtype == torch.uint8 and out.is_contiguous()
    chw = x.permute(0, 3, 1, 2)
    top, left, flip = random_crop_params(6, 20, 24, 12, torch.Generator().manual_seed(1))
    for i in range(6):
        assert _find(chw[i], out[i], 12) == [(int(top[i]), int(left[i]), bool(flip[i]))]


def test_layouts_agree_and_generator_is_deterministic():
    x = _batch(seed=3)
    a = random_crop_flip(x, 12, torch.Generator().manual_seed(5))
    b = random_crop_flip(x.permute(0, 3, 1, 2).contiguous(), 12, torch.Generator().manual_seed(5))
    c = random_crop_flip(x, 12, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    cl = random_crop_flip(x, 12, torch.Generator().manual_seed(5), memory_format=torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, a)


def test_offsets_and_flips_are_per_sample():
    top, left, flip = random_crop_params(400, 256, 256, 227, torch.Generator().manual_seed(0))
    assert top.min() >= 0 and top.max() <= 29 and left.max() <= 29
    assert len(set(top.tolist())) > 20 and len(set(left.tolist())) > 20  # all 30 offsets get used
    assert 0.4 < flip.float().mean().item() < 0.6


def test_crop_flip_matches_slicing():
    x = _batch(n=2, seed=4)
    out = crop_flip(x, torch.tensor([0, 8]), torch.tensor([12, 3]), torch.tensor([False, True]), crop=12)
    chw = x.permute(0, 3, 1, 2)
    assert torch.equal(out[0], chw[0, :, 0:12, 12:24])
    assert torch.equal(out[1], chw[1, :, 8:20, 3:15].flip(-1))


def test_center_and_ten_crop():
    x = _batch(n=3, h=21, w=25, seed=7)
    chw = x.permute(0, 3, 1, 2)
    cc = center_crop(x, 11)
    assert torch.equal(cc, chw[:, :, 5:16, 7:18])
    tc = ten_crop(x, 11)
    assert tc.shape == (10, 3, 3, 11, 11)
    assert torch.equal(tc[0], chw[:, :, :11, :11]) and torch.equal(tc[3], chw[:, :, 10:, 14:])
    assert torch.equal(tc[4], cc)
    for k in range(5):
        assert torch.equal(tc[5 + k], tc[k].flip(-1))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="4-D"):
        random_crop_flip(torch.zeros(20, 20, 3, dtype=torch.uint8), 10)
    with pytest.raises(ValueError, match="larger than the images"):
        center_crop(_batch(), 30)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        center_crop(torch.zeros(2, 4, 20, 20, dtype=torch.uint8), 10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_crops_equal_cpu_crops():
    x = _batch(n=16, h=256, w=256)
    cpu = random_crop_flip(x, 227, torch.Generator().manual_seed(9))
    gpu = random_crop_flip(x.cuda(), 227, torch.Generator().manual_seed(9))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
