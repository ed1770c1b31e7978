"""Net1/Net2, the shipped ``paper`` model, model folders, and the port of the authors' weights.

The port is checked against ``tests/_reference_layers.py``, an independent numpy
re-implementation that reads the raw MATLAB layers itself. Those tests need the authors' .mat
files in ``../shared/paper`` (beside the clone) and mat-io (the ``dev`` extra); they skip, saying
why, when either is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_grains.errors import GrainsError
from napari_grains.nets import (
    MODELS_DIR,
    build_model,
    count_parameters,
    list_models,
    load_model,
    paper_card,
    resolve_model_path,
    save_model,
    sha256_file,
)

PAPER_SRC = Path(__file__).resolve().parents[1].parent / "shared" / "paper"

torch.set_num_threads(1)


def _need_mat() -> None:
    pytest.importorskip("matio", reason="mat-io (the dev extra) reads the authors' .mat files")
    if not (PAPER_SRC / "net1.mat").is_file() or not (PAPER_SRC / "net2.mat").is_file():
        pytest.skip(f"the authors' net1.mat/net2.mat are not in {PAPER_SRC}")


@pytest.fixture(scope="module")
def paper():
    return load_model("paper")


@pytest.fixture(scope="module")
def ref_layers():
    _need_mat()
    import _reference_layers as ref

    return ref, ref.read_layers(PAPER_SRC / "net1.mat"), ref.read_layers(PAPER_SRC / "net2.mat")


def _edge_stack(rows: int = 64, cols: int = 96) -> np.ndarray:
    """A fixed 0/255 edge stack: a few grain-boundary-like lines, some broken, plus speckle."""
    rng = np.random.default_rng(1234)
    e = np.zeros((64, 96, 3))
    e[20, 5:80, :] = 255           # boundary all three detectors agree on
    e[5:60, 40, 0::2] = 255        # Sobel + Canny only
    e[44, 30:90, 2] = 255          # Canny only (weak boundary)
    e[10:55, 70, 1:] = 255
    e[30:33, 70, :] = 0            # a gap
    e[rng.random(e.shape) > 0.97] = 255
    return e[:rows, :cols]


def _hooked(net: torch.nn.Module) -> tuple[list, list]:
    """Record the outputs of every conv block (i.e. after each ReLU) in forward order."""
    acts: list[np.ndarray] = []
    mods = [*net.enc, *net.bridge, *net.dec]
    handles = [m.register_forward_hook(lambda _m, _i, o: acts.append(o[0].numpy().copy()))
               for m in mods]
    return acts, handles


def _compare_layer_by_layer(net, ref, layers, image_hwc, scale_in, mean_in):
    ref_acts = ref.run(layers, image_hwc)
    ref_relu = [a for _, kind, a in ref_acts if kind == "relu"]
    ref_out = ref_acts[-1][2]
    acts, handles = _hooked(net)
    x = torch.from_numpy(image_hwc.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = net(x * scale_in - mean_in)[0, 0].numpy()
    for h in handles:
        h.remove()
    assert len(acts) == len(ref_relu)
    for i, (a, r) in enumerate(zip(acts, ref_relu)):
        r = np.moveaxis(r, -1, 0)                     # (H, W, C) -> (C, H, W)
        assert a.shape == r.shape, f"layer {i}: {a.shape} vs {r.shape}"
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, atol=2e-5 * scale, rtol=1e-4, err_msg=f"ReLU {i}")
    np.testing.assert_allclose(out, ref_out[..., 0], atol=1e-3, rtol=1e-4)
    return out, ref_out[..., 0]


def test_net1_port_matches_independent_reimplementation(paper, ref_layers):
    ref, l1, _ = ref_layers
    _, ref_out = _compare_layer_by_layer(paper.net1, ref, l1, _edge_stack(), 1.0, 0.0)
    # a non-trivial output: the agreed boundary is found, the empty corner is not
    assert ref_out[20, 10:70].mean() > 100 and ref_out[56:, :20].mean() < 30
    # and the pipeline-facing call gives the same map scaled to [0, 1] (fused batch norm)
    x = torch.from_numpy(_edge_stack().astype(np.float32)).permute(2, 0, 1)[None]
    np.testing.assert_allclose(paper.initial_guess(x)[0, 0].numpy(), ref_out / 255, atol=1e-5)


def test_net2_port_matches_independent_reimplementation(paper, ref_layers):
    ref, l1, l2 = ref_layers
    guess = np.round(ref.run(l1, _edge_stack())[-1][2])          # Net1's output, as uint8 values
    # MATLAB's 'zerocenter' is applied by the reference's input layer; torch gets it from the card
    _, ref_out = _compare_layer_by_layer(
        _ZeroCentered(paper.net2, paper.scaling2.input_mean), ref, l2, guess, 1.0, 0.0)
    assert 0.0 <= ref_out.min() and ref_out.max() <= 1.0 and ref_out.max() > 0.5
    got = paper.refine(torch.from_numpy(guess[..., 0].astype(np.float32) / 255)[None, None])
    np.testing.assert_allclose(got[0, 0].numpy(), ref_out, atol=1e-5)


class _ZeroCentered(torch.nn.Module):
    """Net2 with the card's input mean subtracted first, exposing the net's blocks for hooks."""

    def __init__(self, net, mean):
        super().__init__()
        self.net, self.mean = net, mean
        self.enc, self.bridge, self.dec = net.enc, net.bridge, net.dec

    def forward(self, x):
        return self.net(x - self.mean)


def test_paper_card_records_the_files_facts(paper, ref_layers):
    ref, l1, l2 = ref_layers
    assert count_parameters(paper.net1) == ref.n_learnables(l1) == 338_729
    assert count_parameters(paper.net2) == ref.n_learnables(l2) == 17_185
    mean1, ceil1 = ref.mean_and_ceiling(l1)
    mean2, ceil2 = ref.mean_and_ceiling(l2)
    assert (mean1, ceil1) == (0.0, 255.0)
    assert mean2 == pytest.approx(27.370562, abs=1e-6) and ceil2 == 1.0
    assert paper.scaling2.input_mean == pytest.approx(27.370562, abs=1e-6)
    assert paper.scaling1.input_mean == 0.0
    assert paper.net1.ceiling == 255.0 and paper.net2.ceiling == 1.0
    # batch-norm statistics came across (first BN of Net1)
    bn = paper.net1.enc[0].bn
    np.testing.assert_array_equal(bn.running_mean.numpy(), l1[2]["TrainedMean"].ravel())
    np.testing.assert_array_equal(bn.running_var.numpy(), l1[2]["TrainedVariance"].ravel())
    assert bn.eps == pytest.approx(float(l1[2]["Epsilon"].ravel()[0]))


def test_outputs_are_clipped_to_the_ceilings(paper):
    big = torch.full((1, 3, 32, 48), 255.0)
    big[:, :, ::3] = 0.0
    with torch.no_grad():
        raw1 = paper.net1(big * 40.0)                 # far outside the training range
        raw2 = paper.net2(torch.randn(1, 1, 32, 48) * 1e4)
    assert 0.0 <= raw1.min() and raw1.max() <= 255.0
    assert 0.0 <= raw2.min() and raw2.max() <= 1.0
    g = paper.initial_guess(big)
    assert g.shape == (1, 1, 32, 48) and 0.0 <= g.min() and g.max() <= 1.0


def test_converter_reproduces_the_shipped_model(tmp_path, ref_layers):
    from napari_grains.convert import main, mat_layer_classes

    assert "BatchNormalizationLayer" in mat_layer_classes(PAPER_SRC / "net1.mat")
    assert "BatchNormalizationLayer" not in mat_layer_classes(PAPER_SRC / "net2.mat")
    assert main([str(PAPER_SRC), "--out", str(tmp_path / "paper")]) == 0
    shipped = json.loads((MODELS_DIR / "paper" / "card.json").read_text())
    fresh = json.loads((tmp_path / "paper" / "card.json").read_text())
    assert fresh == shipped                        # same card, same sha256 of both weights files


def test_converter_refuses_a_folder_without_the_files(tmp_path, capsys):
    from napari_grains.convert import main

    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "net1.mat" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_default_and_list_models():
    assert "paper" in list_models()
    if not (MODELS_DIR / "default" / "card.json").is_file():
        assert resolve_model_path("default") == MODELS_DIR / "paper"
    m = load_model("default")
    assert m.path is not None and (m.path / "card.json").is_file()
    assert m.card["files"]["net1.safetensors"]["sha256"] == sha256_file(m.path / "net1.safetensors")


def test_shipped_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "paper").mkdir()                  # e.g. running beside ../shared/paper
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("paper") == MODELS_DIR / "paper"
    (tmp_path / "mine").mkdir()
    with pytest.raises(GrainsError, match="no card.json"):
        resolve_model_path("mine")                # not shipped: the folder is meant


def test_unknown_model_name_says_what_exists():
    with pytest.raises(GrainsError, match="paper"):
        load_model("no-such-model")
    with pytest.raises(GrainsError, match="does not exist"):
        load_model("./no/such/folder")


@pytest.mark.parametrize("damage", ["flip_byte", "remove_net2", "truncate_card"])
def test_corrupt_or_missing_files_are_reported(tmp_path, damage):
    folder = tmp_path / "m"
    shutil.copytree(MODELS_DIR / "paper", folder)
    if damage == "flip_byte":
        data = bytearray((folder / "net1.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "net1.safetensors").write_bytes(bytes(data))
    elif damage == "remove_net2":
        (folder / "net2.safetensors").unlink()
    else:
        (folder / "card.json").write_text('{"name": "paper", "net1": ')
    with pytest.raises(GrainsError, match="is corrupt: re-install napari-grains or re-train"):
        load_model(folder)


def test_a_folder_without_card_is_not_a_model(tmp_path):
    with pytest.raises(GrainsError, match="card.json"):
        load_model(tmp_path)


def test_variant_chosen_by_card_roundtrips(tmp_path):
    card = paper_card()
    card["name"] = "wide-unet"
    card["net1"]["params"].update(skip_connections=True, encoder_widths=[8, 16, 32],
                                  encoder_kernels=3, decoder_widths=[16, 8, 8], bridge_width=32)
    card["net2"]["params"].update(skip_connections=True)
    m = build_model(card, seed=7)
    assert m.multiple == 16                        # Net2 still pools 4 times
    assert count_parameters(m.net1) != 338_729
    state_before = torch.random.get_rng_state()
    again = build_model(card, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state_before)   # global RNG untouched
    for a, b in zip(m.net1.parameters(), again.net1.parameters()):
        assert torch.equal(a, b)
    save_model(m, tmp_path / "wide")
    loaded = load_model(tmp_path / "wide")
    assert loaded.name == "wide-unet"
    assert set(loaded.card["files"]) == {"net1.safetensors", "net2.safetensors"}
    x = torch.from_numpy(_edge_stack(32, 48).astype(np.float32)).permute(2, 0, 1)[None]
    m.net1.eval()
    m.net2.eval()
    torch.testing.assert_close(loaded.initial_guess(x), m.initial_guess(x))
    g = loaded.initial_guess(x)
    torch.testing.assert_close(loaded.refine(g), m.refine(g))


def test_training_path_keeps_gradients_and_matches_inference(paper):
    x = torch.from_numpy(_edge_stack(32, 48).astype(np.float32)).permute(2, 0, 1)[None]
    y = paper.initial_guess(x, grad=True)
    assert y.requires_grad
    y.sum().backward()
    assert paper.net1.head.weight.grad is not None
    paper.net1.zero_grad(set_to_none=True)
    torch.testing.assert_close(y.detach(), paper.initial_guess(x), atol=1e-5, rtol=1e-4)


def test_inference_follows_weight_updates():
    m = build_model(paper_card(), seed=3)
    m.net2.eval()
    x = torch.rand(1, 1, 32, 32)
    before = m.refine(x)                            # caches a fused copy
    with torch.no_grad():
        m.net2.head.bias.add_(0.25)                 # what an optimizer step does: in place
    after = m.refine(x)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, m.refine(x, grad=True).detach())


@pytest.mark.parametrize("shape", [(1, 3, 30, 48), (1, 1, 32, 48), (3, 32, 48)])
def test_bad_input_shapes_raise(paper, shape):
    with pytest.raises(GrainsError):
        paper.initial_guess(torch.zeros(shape))


def test_bad_card_raises():
    card = paper_card()
    card["net1"]["architecture"] = "transformer"
    with pytest.raises(GrainsError, match="architecture"):
        build_model(card)
    card = paper_card()
    card["net2"]["params"]["decoder_widths"] = [4]
    with pytest.raises(GrainsError, match="same non-zero length"):
        build_model(card)
