"""Training a :class:`~texttopicnet.instance.cams.CamHead` on the topic labels over a frozen backbone.

The paper trained its VGG16-CAM layer (conv 3x3, GAP, linear) on ImageNet classes with VGG-16
frozen; here the targets are TextTopicNet's topic distributions (``RUN/packed``: the same
images and ``labels.npy`` the network was trained on) and the loss is the network's own
(``sigmoid_ce`` by default, any name of :func:`texttopicnet.training.losses.build_loss`).

Since the backbone is frozen its activations are computed once, for the centre crop and its
mirror image of every packed image (the paper's training views without the random crops), and
cached in float16 (``cache/acts.npy``, memory-mapped; built in resumable chunks). The head then
trains for ``epochs`` passes over the cache (SGD with momentum, Caffe's solver: biases lr x2,
no decay), each epoch shuffled by ``(seed, epoch)``, with a held-out share reporting the loss
against the predict-the-mean baseline. After every epoch: one JSON line in ``log.jsonl`` and an
atomic ``checkpoint.pt``; a rerun resumes after the last finished epoch.

Use::

    summary = train_cam_head(net, info, "conv5", PackedData("RUN/packed"), "RUN/instance/cam_head/trained")
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import UserError
from ..core.io import atomic_path, read_json, write_json
from ..networks import backbones, layers
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.logging import read_log, truncate_log
from ..training.losses import build_loss
from .cams import CAM_CHANNELS, CamHead, head_metadata


@dataclass(frozen=True)
class HeadConfig:
    channels: int = CAM_CHANNELS     # the paper's 1024
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9            # Caffe's solver (the paper's network)
    weight_decay: float = 5e-4
    loss: str = "sigmoid_ce"         # TextTopicNet's loss on topic distributions
    eval_fraction: float = 0.1
    seed: int = 0


def _views(images: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop and its mirror image of a uint8 (B, S, S, 3) chunk: (2B, crop, crop, 3)."""
    h, w = images.shape[1:3]
    top, left = (h - crop) // 2, (w - crop) // 2
    c = images[:, top:top + crop, left:left + crop]
    return np.concatenate([c, c[:, :, ::-1]], axis=0)


def build_cache(net, info: dict, cam_layer: str, packed, cache_dir: Path, batch_size: int = 32,
                device: torch.device | str = "cpu", log=print) -> np.ndarray:
    """float16 activations ``(2N, C, h, w)``: rows ``i`` (centre crop) and ``N + i`` (mirror) of image ``i``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = backbones.spec_of(net)
    crop = spec.crop
    if min(packed.image_size) < crop:
        raise UserError(f"packed images are {packed.image_size} but {spec.name} crops {crop}x{crop}")
    key = {"backbone_sha256": info["sha256"], "cam_layer": cam_layer, "crop": crop, "n": len(packed),
           "index_head": packed.index[:3]}
    final, partial, state = cache_dir / "acts.npy", cache_dir / "acts.partial.npy", cache_dir / "acts.json"
    recorded = read_json(state) if state.is_file() else None
    if final.is_file() and recorded == {**key, "done": len(packed)}:
        return np.load(final, mmap_mode="r")
    run = layers.FeatureExtractor(net, [cam_layer])
    n = len(packed)
    with torch.no_grad():
        probe = run(backbones.preprocess(net, torch.from_numpy(_views(packed.images[:1], crop)[:1].copy())))[cam_layer]
    shape = (2 * n, *probe.shape[1:])
    done = recorded["done"] if (recorded and {k: v for k, v in recorded.items() if k != "done"} == key
                                and partial.is_file()) else 0
    arr = (np.lib.format.open_memmap(partial, mode="r+") if done else
           np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape))
    if done:
        log(f"resuming the activation cache at image {done} of {n}")
    with tqdm(total=n, initial=done, desc=f"caching {cam_layer} activations", unit="img") as bar:
        for start in range(done, n, batch_size):
            stop = min(n, start + batch_size)
            views = torch.from_numpy(_views(np.asarray(packed.images[start:stop]), crop).copy())
            with torch.no_grad():
                act = run(backbones.preprocess(net, views).to(device))[cam_layer].float().cpu().numpy()
            b = stop - start
            arr[start:stop] = act[:b].astype(np.float16)
            arr[n + start:n + stop] = act[b:].astype(np.float16)
            arr.flush()
            write_json(state, {**key, "done": stop})
            bar.update(b)
    del arr
    partial.replace(final)
    return np.load(final, mmap_mode="r")


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out images (both views of an image go to the same side)."""
    perm = np.random.default_rng([seed, 7]).permutation(n)
    k = round(n * fraction) if n > 1 else 0
    return np.sort(perm[k:]), np.sort(perm[:k])


def _param_groups(head: CamHead, cfg: HeadConfig) -> list[dict]:
    weights = [head.conv.weight, head.fc.weight]
    biases = [head.conv.bias, head.fc.bias]
    return [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": biases, "lr": 2 * cfg.lr, "weight_decay": 0.0}]


def _loss_on(head, loss, acts, labels, rows, n, batch, device) -> float:
    total, count = 0.0, 0
    head.eval()
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            r = rows[s:s + batch]
            both = np.concatenate([r, r + n])
            x = torch.from_numpy(np.asarray(acts[both], dtype=np.float32)).to(device)
            y = torch.from_numpy(labels[np.concatenate([r, r])]).to(device)
            total += float(loss(head(x), y)) * len(both)
            count += len(both)
    return total / max(count, 1)


def train_cam_head(net, info: dict, cam_layer: str, packed, out_dir: str | Path, cfg: HeadConfig = HeadConfig(),
                   device: torch.device | str = "cpu", log=print) -> dict:
    """Train (or resume) the CAM head; writes ``cam_head.safetensors``, ``log.jsonl``, ``summary.json``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    net = net.to(device).eval()
    labels = np.ascontiguousarray(packed.labels, dtype=np.float32)
    n, k = labels.shape
    if n < 2:
        raise UserError(f"{packed.dir}: {n} packed image(s); a CAM head needs at least 2")
    loss = build_loss(cfg.loss)  # an unknown name fails before minutes of caching
    acts = build_cache(net, info, cam_layer, packed, out_dir / "cache", device=device, log=log)
    train_rows, eval_rows = _split(n, cfg.eval_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    head = CamHead(int(acts.shape[1]), k, cfg.channels).to(device)
    opt = torch.optim.SGD(_param_groups(head, cfg), lr=cfg.lr, momentum=cfg.momentum)
    ckpt_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    config = {**asdict(cfg), "cam_layer": cam_layer, "backbone_sha256": info["sha256"], "num_outputs": k}
    start = 1
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        if state.get("config") == config:
            head.load_state_dict(state["head"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["epoch"]) + 1
            log(f"resuming after epoch {start - 1} of {cfg.epochs}")
        else:
            log("the checkpoint was made with other settings: starting over")
    truncate_log(log_path, start - 1) if log_path.exists() else None
    if start == 1 and log_path.exists():
        log_path.unlink()
    bar = tqdm(range(start, cfg.epochs + 1), desc="training the CAM head", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        head.train()
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(np.concatenate([train_rows, train_rows + n]))
        total, count = 0.0, 0
        for s in range(0, len(perm), cfg.batch_size):
            rows = np.sort(perm[s:s + cfg.batch_size])
            x = torch.from_numpy(np.asarray(acts[rows], dtype=np.float32)).to(device)
            y = torch.from_numpy(labels[rows % n]).to(device)
            value = loss(head(x), y)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            total += float(value.detach()) * len(rows)
            count += len(rows)
        record = {"iteration": epoch, "epoch": epoch, "loss": total / max(count, 1), "n": count,
                  "seconds": time.perf_counter() - t0}
        if len(eval_rows):
            record["eval_loss"] = _loss_on(head, loss, acts, labels, eval_rows, n, cfg.batch_size, device)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        save_checkpoint(ckpt_path, {"head": head.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                                    "config": config})
        bar.set_postfix(loss=f"{record['loss']:.4f}")
    records = read_log(log_path)
    head = head.cpu().eval()
    with atomic_path(out_dir / "cam_head.safetensors") as tmp:
        save_file({k2: v.contiguous() for k2, v in head.state_dict().items()}, str(tmp),
                  metadata=head_metadata(head, info, cam_layer, {"loss": cfg.loss}))
    held = labels[eval_rows] if len(eval_rows) else labels
    summary = {"epochs": cfg.epochs, "images": n, "views": 2 * n, "train_images": len(train_rows),
               "eval_images": len(eval_rows), "num_outputs": k, "cam_layer": cam_layer,
               "initial_loss": records[0]["loss"] if records else None,
               "final_loss": records[-1]["loss"] if records else None,
               "eval_loss": records[-1].get("eval_loss") if records else None,
               "eval_mean_baseline_loss": loss.mean_baseline(held, labels[train_rows].mean(axis=0)),
               "activation_shape": list(acts.shape[1:]), "config": config}
    write_json(out_dir / "summary.json", summary)
    return summary
