"""CAM heads, CAMs of GAP + linear backbones, the CAM network, and resumable CAM-head training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texttopicnet.core.errors import UserError
from texttopicnet.instance import cam_training, cams
from texttopicnet.networks import backbones
from texttopicnet.training.data import PackedData
from texttopicnet.weights.loading import load_network


def close(a, b, atol=1e-5):
    return torch.allclose(torch.as_tensor(a).detach().float(), torch.as_tensor(b).detach().float(), atol=atol, rtol=1e-5)


def test_cam_head_maps_average_to_its_logits():
    torch.manual_seed(0)
    head = cams.CamHead(6, 4, channels=10).eval()
    act = torch.relu(torch.randn(3, 6, 5, 7))
    with torch.no_grad():
        maps, logits = head.cams(act)
    # GAP commutes with the linear layer: mean_ij CAM_k + b_k is the logit (CAM's defining identity)
    assert close(maps.mean(dim=(2, 3)) + head.fc.bias, logits)
    with torch.no_grad():
        conv = torch.relu(torch.nn.functional.conv2d(act, head.conv.weight, head.conv.bias, padding=1))
        plain = torch.stack([sum(head.fc.weight[k, c] * conv[:, c] for c in range(10)) for k in range(4)], dim=1)
    assert close(maps, plain)


def test_gap_backbone_cams_come_from_its_own_head():
    net, _ = load_network("random", num_outputs=5, seed=0, arch="resnet50")
    cn = cams.CamNetwork(net)
    assert (cn.feature_layer, cn.cam_layer) == ("layer4", "layer4")
    x = torch.randn(2, 3, 96, 128)
    feats, maps, scores = cn(x)
    with torch.no_grad():
        logits = net(x)
    assert close(scores, logits, 1e-4)
    assert close(maps.mean(dim=(2, 3)) + backbones.head_of(net).bias, logits, 1e-4)
    assert feats.shape[-2:] == maps.shape[-2:] == (3, 4)
    with pytest.raises(UserError, match="need a trained CAM head"):
        cams.CamNetwork(net, cam_layer="layer3")


def test_conv_backbone_needs_a_head_and_features_are_the_named_layer():
    net, _ = load_network("random", num_outputs=5, seed=0)
    with pytest.raises(UserError, match="CAM head"):
        cams.CamNetwork(net)
    head = cams.CamHead(256, 5, channels=8).eval()
    cn = cams.CamNetwork(net, head=head)
    x = torch.randn(1, 3, 160, 224)
    feats, maps, scores = cn(x)
    with torch.no_grad():
        conv5 = net.extract(x, ["conv5"])["conv5"]
        ref_maps, ref_scores = head.cams(conv5)
    assert close(feats, conv5) and close(maps, ref_maps) and close(scores, ref_scores)
    cn4 = cams.CamNetwork(net, head=cams.CamHead(256, 5, channels=8), feature_layer="conv4")
    assert cn4(x)[0].shape[1] == 384


def _packed(tmp_path, n=6, k=4):
    rng = np.random.default_rng(0)
    d = tmp_path / "packed"
    d.mkdir()
    np.save(d / "images.npy", rng.integers(0, 255, (n, 256, 256, 3), dtype=np.uint8))
    np.save(d / "labels.npy", rng.dirichlet(np.ones(k), n).astype(np.float32))
    (d / "index.txt").write_text("".join(f"/img/{i}.jpg\n" for i in range(n)))
    return PackedData(d)


def test_training_resumes_to_the_same_head_and_refuses_another_backbone(tmp_path):
    packed = _packed(tmp_path)
    net, info = load_network("random", num_outputs=4, seed=0)
    cfg2 = cam_training.HeadConfig(channels=8, epochs=2, batch_size=4, lr=0.01, eval_fraction=0.2, seed=1)
    s = cam_training.train_cam_head(net, info, "conv5", packed, tmp_path / "straight", cfg2, log=lambda m: None)
    assert s["epochs"] == 2 and s["eval_images"] == 1 and s["views"] == 12
    cfg1 = cam_training.HeadConfig(**{**cfg2.__dict__, "epochs": 1})
    cam_training.train_cam_head(net, info, "conv5", packed, tmp_path / "resumed", cfg1, log=lambda m: None)
    # a checkpoint made with other settings is not resumed: start the 2-epoch run from the 1-epoch one's state
    ck = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    ck["config"]["epochs"] = 2
    torch.save(ck, tmp_path / "resumed" / "checkpoint.pt")
    cam_training.train_cam_head(net, info, "conv5", packed, tmp_path / "resumed", cfg2, log=lambda m: None)
    a, _ = cams.load_cam_head(tmp_path / "straight" / "cam_head.safetensors", info)
    b, rec = cams.load_cam_head(tmp_path / "resumed" / "cam_head.safetensors", info)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert rec["cam_layer"] == "conv5" and rec["head"]["num_outputs"] == 4
    assert [r["epoch"] for r in cam_training.read_log(tmp_path / "resumed" / "log.jsonl")] == [1, 2]
    _, other_info = load_network("random", num_outputs=4, seed=5)
    with pytest.raises(UserError, match="trained over the backbone"):
        cams.load_cam_head(tmp_path / "straight" / "cam_head.safetensors", other_info)
