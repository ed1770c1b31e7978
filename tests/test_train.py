"""Training: a tiny run learns and writes a loadable model; stop / resume behave."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from napari_grains.errors import GrainsError
from napari_grains.nets import load_model
from napari_grains.train import (
    Checkpoint,
    Done,
    Epoch,
    Step,
    TrainConfig,
    Validation,
    boundary_loss,
    corrupt_boundaries,
    cut_gaps,
    gap_weights,
    iter_train,
    mean_ari,
    resolve_device,
    soft_cldice_loss,
    tolerant_prf,
)


def tiny(**kw) -> TrainConfig:
    base = {"n_pairs": 8, "size": (32, 64), "crop": (32, 32), "net1_epochs": 2, "net2_epochs": 2,
                "batch_size": 3, "lr": 3e-3, "synth": {"mean_diameter": [8.0, 16.0]}, "val_limit": 4,
                "net2_val_iterations": (1, 2), "net2_unroll": 2, "threads": 1, "device": "cpu"}
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data") / "pairs.npz")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("model")
    events = list(iter_train(tiny(net1_epochs=4, net2_epochs=5, data_cache=cache), out))
    return out, events


def test_tiny_run_lowers_loss_and_writes_loadable_model(full_run):
    out, events = full_run
    assert isinstance(events[-1], Done) and not events[-1].stopped
    for stage in ("net1", "net2"):
        losses = [e.train_loss for e in events if isinstance(e, Epoch) and e.stage == stage]
        assert len(losses) >= 2
        assert losses[-1] < losses[0], f"{stage} training loss did not go down: {losses}"
    steps = [e.step for e in events if isinstance(e, Step) and e.stage == "net1"]
    assert steps == list(range(1, len(steps) + 1))

    model = load_model(out)
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["status"] == "complete"
    assert card["training"]["config"]["n_pairs"] == 8
    assert card["training"]["data"]["split"] == {"train": 6, "val": 1, "test": 1}
    edges = torch.zeros(1, 3, 32, 64)
    edges[0, :, 10, :] = 255.0
    guess = model.initial_guess(edges)
    refined = model.refine(guess)
    assert guess.shape == refined.shape == (1, 1, 32, 64)
    assert float(guess.min()) >= 0.0 and float(guess.max()) <= 1.0
    # and the pipeline runs it (what `napari-grains extract --model DIR` does)
    from napari_grains.extract import extract

    img = np.random.default_rng(0).random((40, 70)).astype(np.float32)
    res = extract(img, model, scale=1.0, max_iterations=3)
    assert res.boundaries.shape == (40, 70) and res.boundaries.dtype == bool


def test_best_checkpoint_is_the_lowest_validation_error(full_run):
    out, events = full_run
    vals = [e for e in events if isinstance(e, Validation) and e.stage == "net1"]
    best = min(vals, key=lambda e: e.error)
    flagged = [e for e in vals if e.best]
    assert flagged[-1].error == best.error
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["best_validation_error"]["net1"] == pytest.approx(best.error)
    # a best Validation is followed by a Checkpoint of the model folder
    i = events.index(flagged[-1])
    assert any(isinstance(e, Checkpoint) and e.best and e.path == out for e in events[i:])


def _weights(folder):
    from safetensors.torch import load_file

    return {n: load_file(str(folder / f"{n}.safetensors")) for n in ("net1", "net2")}


def test_stop_then_resume_continues_exactly(tmp_path, cache):
    cfg = tiny(net1_epochs=2, net2_epochs=1, data_cache=cache)
    ref = tmp_path / "ref"
    list(iter_train(cfg, ref))

    out = tmp_path / "stopped"
    gen = iter_train(cfg, out)
    seen = 0
    for ev in gen:
        if isinstance(ev, Step):
            seen += 1
            if seen == 3:  # mid-way through Net1's second epoch
                break
    gen.close()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"]["net1"] == 3 and state["stage"] == "net1"
    # stopping left a loadable model (the best so far)
    assert json.loads((out / "card.json").read_text())["training"]["status"] == "stopped"
    load_model(out)

    resumed = list(iter_train(None, out, resume=out))
    first = next(e for e in resumed if isinstance(e, Step))
    assert (first.stage, first.step) == ("net1", 4)
    assert isinstance(resumed[-1], Done)
    a, b = _weights(ref), _weights(out)
    for net in a:
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], rtol=1e-4, atol=1e-5)


def test_resume_rejects_other_data(tmp_path, cache):
    out = tmp_path / "m"
    gen = iter_train(tiny(data_cache=cache), out)
    for ev in gen:
        if isinstance(ev, Checkpoint):
            break
    gen.close()
    with pytest.raises(GrainsError, match="data settings"):
        next(iter_train(tiny(n_pairs=9), out, resume=out))
    with pytest.raises(GrainsError, match="no training checkpoint"):
        next(iter_train(None, tmp_path / "nothing", resume=tmp_path / "nothing"))


def test_a_fresh_run_refuses_a_folder_holding_another_runs_checkpoint(tmp_path, cache):
    out = tmp_path / "m"
    list(iter_train(tiny(net1_epochs=1, net2_epochs=1, data_cache=cache), out))
    before = {f.name: f.read_bytes() for f in (out / "checkpoint").iterdir()}
    # a second fresh run there would have taken the first run's best weights for its own
    with pytest.raises(GrainsError, match="--resume"):
        next(iter_train(tiny(net1_epochs=1, net2_epochs=1, data_cache=cache, seed=5), out))
    assert {f.name: f.read_bytes() for f in (out / "checkpoint").iterdir()} == before
    # continuing that run in place is still allowed
    assert isinstance(list(iter_train(tiny(net1_epochs=1, net2_epochs=2, data_cache=cache),
                                      out, resume=out))[-1], Done)
    # a run killed before its first checkpoint: no state to resume, so say to delete it
    stuck = tmp_path / "stuck"
    (stuck / "checkpoint").mkdir(parents=True)
    (stuck / "checkpoint" / "best_net1.safetensors").write_bytes(b"x")
    with pytest.raises(GrainsError, match="delete that folder"):
        next(iter_train(tiny(data_cache=cache), stuck))


def test_init_warns_when_a_net_it_cannot_fit_will_be_trained_from_scratch(tmp_path, cache):
    from napari_grains.train import default_card

    card = default_card()
    card["net2"]["params"]["in_channels"] = 2
    cond = tmp_path / "cond"
    list(iter_train(tiny(net1_epochs=1, net2_epochs=1, data_cache=cache, card=card), cond))
    # no --card: the default card's one-channel Net2 cannot take the conditioned weights
    with pytest.warns(UserWarning, match="net2 starts from random weights"):
        list(iter_train(tiny(net1_epochs=0, net2_epochs=1, data_cache=cache, init=str(cond)),
                        tmp_path / "again"))
    # with that model's card, both nets are taken over
    list(iter_train(tiny(net1_epochs=0, net2_epochs=1, data_cache=cache, init=str(cond),
                         card=card), tmp_path / "tuned"))
    assert load_model(tmp_path / "tuned").card["init"]["nets"] == ["net1", "net2"]


def test_centre_line_dice_charges_a_break_by_what_it_cuts():
    t = torch.zeros(1, 1, 48, 48)
    t[..., 20:22, :] = 1  # a 2-px line across the image
    assert float(soft_cldice_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_cldice_loss(torch.zeros_like(t), t)) > 0.95
    gap = t.clone()
    gap[..., 20:22, 20:28] = 0
    blob = t.clone()
    blob[..., 10:14, 30:34] = 1  # a spurious fragment
    assert 0.05 < float(soft_cldice_loss(gap, t)) < 0.5
    assert float(soft_cldice_loss(blob, t)) > 0.0
    # differentiable: a gap pixel gets a gradient that raises it
    p = gap.clone().requires_grad_(True)
    soft_cldice_loss(p, t).backward()
    assert float(p.grad[0, 0, 20, 24]) < 0


def test_corruption_is_graded():
    from napari_grains.synth import SynthParams, generate_pair

    t = generate_pair(SynthParams(height=64, width=128, mean_diameter=(15.0, 20.0)),
                      seed=3).target
    np.testing.assert_array_equal(corrupt_boundaries(t, 0.0, np.random.default_rng(0)), t)
    tt = torch.from_numpy(t)[None, None]
    f1 = []
    for s in (0.1, 0.4, 0.7, 1.0):
        scores = [tolerant_prf(torch.from_numpy(corrupt_boundaries(
            t, s, np.random.default_rng(k)) > 0.5)[None, None], tt, 1)[2] for k in range(4)]
        f1.append(np.mean(scores))
    assert f1[0] > 0.8
    assert all(a > b for a, b in itertools.pairwise(f1)), f1
    pure = corrupt_boundaries(t, 1.0, np.random.default_rng(1))
    assert abs(np.corrcoef(pure.ravel(), t.ravel())[0, 1]) < 0.05


def test_cut_gaps_only_removes_boundary_and_grows_with_severity():
    from napari_grains.synth import SynthParams, generate_pair

    t = generate_pair(SynthParams(height=64, width=128, mean_diameter=(15.0, 20.0)),
                      seed=4).target.astype(bool)
    kept = []
    for s in (0.0, 0.3, 1.0):
        x = cut_gaps(t.astype(np.float32), t, s, np.random.default_rng(5))
        assert x.dtype == np.float32 and x.shape == t.shape
        assert not (x[~t] > 0).any()  # nothing is added off the boundary
        kept.append(float(x[t].mean()))
    assert kept[0] == 1.0
    assert kept[0] > kept[1] > kept[2]
    # a gapped map splits the grain network: fewer closed regions than the truth
    from scipy import ndimage as ndi

    n_true = ndi.label(~t)[1]
    n_cut = ndi.label(~(cut_gaps(t.astype(np.float32), t, 1.0,
                                 np.random.default_rng(6)) > 0.5))[1]
    assert n_cut < n_true


def test_gap_weights_mark_missed_boundary_only():
    t = torch.zeros(1, 1, 16, 16)
    t[..., 8, :] = 1
    x = t.clone()
    x[..., 8, 4:8] = 0  # a 4 px gap
    x[..., 9, 12] = 1  # a neighbour 1 px off still counts as seen
    x[..., 8, 12] = 0
    w = gap_weights(x, t, 10.0)
    gap = w[0, 0] == 10.0
    assert gap.sum() == 2  # columns 5 and 6: 4 and 7 have a boundary neighbour
    assert gap[8, 5] and gap[8, 6]
    assert torch.all(w[0, 0][~gap] == 1.0)
    assert torch.all(gap_weights(x, t, 1.0) == 1.0)
    # the weight makes a map that leaves the gap open cost more than one that closes it
    closed = t * 0.9
    open_ = closed.clone()
    open_[..., 8, 4:8] = 0
    assert (boundary_loss(open_, t, "mse", weight=w) - boundary_loss(closed, t, "mse", weight=w)
            > boundary_loss(open_, t, "mse") - boundary_loss(closed, t, "mse"))
    with pytest.raises(GrainsError):
        gap_weights(x, t, 0.0)


def test_gap_sources_and_weight_train(tmp_path, cache):
    cfg = tiny(net1_epochs=0, net2_epochs=1, data_cache=cache, net2_gap_weight=5.0,
               net2_mix={"net1_gaps": 0.5, "gaps": 0.5})
    events = list(iter_train(cfg, tmp_path / "gaps"))
    steps = [e for e in events if isinstance(e, Step) and e.stage == "net2"]
    assert steps and all(np.isfinite(e.loss) for e in steps)
    card = json.loads((tmp_path / "gaps" / "card.json").read_text())
    assert card["training"]["config"]["net2_gap_weight"] == 5.0
    assert card["training"]["config"]["net2_mix"] == {"net1_gaps": 0.5, "gaps": 0.5}


def test_loss_prefers_the_target():
    t = torch.zeros(1, 1, 16, 16)
    t[..., 8, :] = 1
    for kind in ("mse_dice", "mse", "bce_dice", "bce", "mse_dice_cldice"):
        assert boundary_loss(t, t, kind) < boundary_loss(1 - t, t, kind)
        assert boundary_loss(t * 0.9, t, kind) < boundary_loss(t * 0.1, t, kind)


@pytest.mark.parametrize("bad", [{"size": (30, 64)}, {"crop": (64, 64)}, {"n_pairs": 2},
                                 {"loss": "l1"}, {"net2_mix": {"other": 1.0}},
                                 {"net2_mix": {"gaps": -1.0, "net1": 1.0}},
                                 {"net2_gap_weight": 0.0}, {"net2_val_ari_weight": -1.0}])
def test_bad_config_says_what_to_do(bad):
    with pytest.raises(GrainsError):
        tiny(**bad)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GrainsError, match="CUDA"):
            resolve_device("cuda")


def test_cli_trains_and_resumes(tmp_path, cache, capsys):
    from napari_grains.cli import main

    out = tmp_path / "cli_model"
    args = ["train", "--out", str(out), "--pairs", "8", "--size", "32", "64", "--crop", "32",
            "32", "--net1-epochs", "1", "--net2-epochs", "1", "--batch-size", "3",
            "--synth", "mean_diameter=[8, 16]", "--device", "cpu", "--threads", "1",
            "--data-cache", cache, "--quiet", "--gap-weight", "4", "--net2-mix", "net1=1",
            "--net2-mix", "net1_gaps=1"]
    assert main(args) == 0
    load_model(out)
    # more Net2 epochs on top of the finished run
    assert main(["train", "--resume", str(out), "--net2-epochs", "2", "--quiet"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["config"]["net2_epochs"] == 2
    assert card["training"]["config"]["net2_gap_weight"] == 4.0
    assert card["training"]["config"]["net2_mix"] == {"net1": 1.0, "net1_gaps": 1.0}
    assert card["training"]["steps"]["net2"] == 4
    assert main(["train", "--pairs", "8"]) == 2
    assert "--out" in capsys.readouterr().err


def test_init_from_paper_keeps_its_net1(tmp_path, cache):
    out = tmp_path / "ft"
    events = list(iter_train(tiny(init="paper", net1_epochs=0, net2_epochs=1,
                                  data_cache=cache), out))
    assert isinstance(events[-1], Done)
    paper, ours = load_model("paper"), load_model(out)
    for k, v in paper.net1.state_dict().items():
        torch.testing.assert_close(ours.net1.state_dict()[k], v)
    card = json.loads((out / "card.json").read_text())
    assert card["net1"]["params"]["ceiling"] == 255.0  # the paper's scaling came with it
    assert card["net1"]["output_scale"] == 255.0
    assert card["training"]["mean_intercept_px"] is None  # extract's paper default applies
    edges = torch.zeros(1, 3, 32, 64)
    torch.testing.assert_close(ours.initial_guess(edges), paper.initial_guess(edges))


def test_mean_ari_sees_a_gap_that_f1_barely_sees():
    t = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    t[..., 16, :] = True  # two grains, top and bottom
    gapped = t.clone()
    gapped[..., 16, 10:16] = False  # a 6-px gap merges them (longer than measure closes)
    assert mean_ari(t, t) == pytest.approx(1.0)
    assert mean_ari(gapped, t) < 0.1
    assert tolerant_prf(gapped, t, 2)[2] > 0.9


def test_validation_scores_closure_and_old_runs_keep_f1_only(full_run):
    _, events = full_run
    vals = [e for e in events if isinstance(e, Validation) and e.stage == "net2"]
    assert vals and all("ari_it1" in e.metrics and "ari_it2" in e.metrics for e in vals)
    for e in vals:
        f1_err = np.mean([1 - e.metrics[f"{p}f1_it{k}"] for p in ("", "identity_")
                          for k in (1, 2)])
        ari_err = np.mean([1 - e.metrics[f"ari_it{k}"] for k in (1, 2)])
        assert e.error == pytest.approx(f1_err + ari_err)
    saved = tiny().to_dict()
    del saved["net2_val_ari_weight"]  # a config written before the option existed
    assert TrainConfig.from_dict(saved).net2_val_ari_weight == 0.0


def test_untrained_stage_keeps_the_start_models_net_whatever_its_layout(tmp_path, cache):
    from napari_grains.train import default_card

    card = default_card()
    card["net1"]["params"].update(skip_connections=True, decoder_widths=[64, 32, 16, 16])
    first = tmp_path / "unet1"
    list(iter_train(tiny(net1_epochs=1, net2_epochs=0, data_cache=cache, card=card), first))
    # no card given: the default card's Net1 is the paper layout, yet Net1 is not trained
    second = tmp_path / "net2_only"
    list(iter_train(tiny(net1_epochs=0, net2_epochs=1, data_cache=cache, init=str(first)),
                    second))
    a, b = _weights(first)["net1"], _weights(second)["net1"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_model(second).card["net1"]["params"]["skip_connections"] is True
    # what was measured for the kept Net1 at inference goes with it
    card_path = first / "card.json"
    c = json.loads(card_path.read_text())
    c["inference"] = {"scale_aim": 1.6}
    card_path.write_text(json.dumps(c))
    third = tmp_path / "net2_again"
    list(iter_train(tiny(net1_epochs=0, net2_epochs=1, data_cache=cache, init=str(first)),
                    third))
    assert load_model(third).card["inference"] == {"scale_aim": 1.6}


def test_a_net2_conditioned_on_net1s_map_trains_and_extracts(tmp_path, cache):
    """Net2 with 2 input channels sees its last output and Net1's map at every iteration."""
    from napari_grains.extract import ExtractParams, extract
    from napari_grains.train import default_card

    card = default_card()
    card["net2"]["params"]["in_channels"] = 2
    out = tmp_path / "cond"
    events = list(iter_train(tiny(net1_epochs=1, net2_epochs=2, data_cache=cache, card=card,
                                  net2_gap_weight=2.0), out))
    assert isinstance(events[-1], Done)
    model = load_model(out)
    assert model.net2_channels == 2
    x = torch.rand(1, 1, 32, 32)
    assert model.net2_input(x, x).shape == (1, 2, 32, 32)
    with pytest.raises(GrainsError, match="shape"):
        model.refine(x)  # the map alone is not enough for this Net2
    img = np.random.default_rng(0).random((40, 56)).astype(np.float32)
    res = extract(img, model, ExtractParams(max_iterations=3, tolerance=0.0))
    assert res.n_iterations == 3 and res.boundaries.shape == img.shape
    # the condition is Net1's map: a different Net1 map changes what Net2 makes of one state
    # (compared before the clipped head, which a 2-epoch net may hold at 0 everywhere)
    seen = []
    hook = model.net2.head.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        s = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            model.net2(model.net2_input(s, torch.zeros_like(s)))
            model.net2(model.net2_input(s, torch.ones_like(s)))
    finally:
        hook.remove()
    assert not torch.equal(seen[0], seen[1])


def test_iter_net2_gives_a_conditioned_net2_net1s_map_at_every_iteration():
    from napari_grains.extract import ExtractParams, iter_net2

    class Spy:  # a conditioned Net2 that records its input and halves the state
        net2_channels = 2
        multiple = 16

        def __init__(self):
            self.seen = []

        def refine(self, x):
            self.seen.append(x.clone())
            return x[:, :1] * 0.5

    initial = np.random.default_rng(1).random((32, 48)).astype(np.float32)
    spy = Spy()
    for rule in ("paper", "script"):
        spy.seen.clear()
        list(iter_net2(initial, spy, ExtractParams(max_iterations=3, tolerance=0.0,
                                                   convergence=rule)))
        assert len(spy.seen) == 3
        for x in spy.seen:
            assert x.shape[1] == 2
            np.testing.assert_allclose(x[0, 1, :32, :48].numpy(), initial, atol=1e-6)
        # the state channel is Net2's own last output
        assert float(spy.seen[2][0, 0].max()) < float(spy.seen[0][0, 0].max())
    # an explicit condition replaces Net1's map (evaluate.net2_fixed_point's initial=)
    spy.seen.clear()
    other = np.zeros_like(initial)
    list(iter_net2(initial, spy, ExtractParams(max_iterations=1, tolerance=0.0),
                   condition=other))
    assert float(spy.seen[0][0, 1].abs().max()) == 0.0
