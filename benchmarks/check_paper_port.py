"""Check the port of the authors' networks on their own TEM image and print the figures.

Run ``.venv/bin/python benchmarks/check_paper_port.py`` (needs mat-io and ``../shared/paper``).

1. Layer by layer: the shipped ``paper`` model (torch) against the independent numpy
   re-implementation in ``tests/_reference_layers.py`` on the paper-mode edge stack of
   ``TEM.png`` -- max absolute difference after every ReLU and at the output.
2. Orientation: MATLAB stores kernels in the order it applies them, but whether a port must flip
   them spatially cannot be read from the file. Flipping *every* conv and transposed conv gives
   an equivalent network (it equals running the unflipped one on the mirrored image), so the
   test that matters is a partial flip: flipping only the convs (or only the transposed convs)
   destroys Net1's agreement with the edges and Net2's convergence when the unflipped layout is
   the right one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from napari_grains.extract import ExtractParams, compute_edges, preprocess
from napari_grains.io import read_image
from napari_grains.nets import build_net, load_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import _reference_layers as ref


def _blocks(net) -> list:
    return [*net.enc, *net.bridge, *net.dec]


def layer_by_layer(net, layers, image_hwc, mean) -> list[tuple[str, float, float]]:
    """(MATLAB layer name, max |torch - reference|, max |reference|) after each ReLU + output."""
    acts = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: acts.append(o[0].numpy().copy()))
             for b in _blocks(net)]
    x = torch.from_numpy(image_hwc.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = net(x - mean)[0].numpy()
    for h in hooks:
        h.remove()
    r_all = ref.run(layers, image_hwc)
    names = [(n, a) for n, kind, a in r_all if kind == "relu"] + [r_all[-1][::2]]
    rows = []
    for (name, r), a in zip(names, [*acts, out]):
        r = np.moveaxis(r, -1, 0)
        rows.append((name, float(np.abs(a - r).max()), float(np.abs(r).max())))
    return rows


def flipped(net, spec: dict, convs: bool, tconvs: bool):
    sd = {}
    for k, v in net.state_dict().items():
        is_t = k.endswith("up.weight")
        if v.ndim == 4 and ((is_t and tconvs) or (not is_t and convs)):
            v = v.flip(2, 3)
        sd[k] = v
    out = build_net(spec)
    out.load_state_dict(sd)
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "paper"))
    p.add_argument("--iterations", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    src = Path(args.source)
    model = load_model("paper")
    params = ExtractParams(mode="paper")
    pre = preprocess(read_image(src / "TEM.png").data, params)
    edges = compute_edges(pre, params).rgb.astype(np.float64)
    l1, l2 = ref.read_layers(src / "net1.mat"), ref.read_layers(src / "net2.mat")

    print(f"1. layer by layer on TEM.png (paper mode, {edges.shape[0]}x{edges.shape[1]})")
    rows1 = layer_by_layer(model.net1, l1, edges, 0.0)
    guess = np.round(ref.run(l1, edges)[-1][2])
    rows2 = layer_by_layer(model.net2, l2, guess, model.scaling2.input_mean)
    for net, rows in (("Net1", rows1), ("Net2", rows2)):
        for name, diff, scale in rows:
            print(f"   {net} {name:24s} max|diff| {diff:.2e}   (max|activation| {scale:.3g})")

    print("2. orientation (Net1: mean output on edge pixels / elsewhere; Net2: mean |change| "
          f"of iteration {args.iterations})")
    x1 = torch.from_numpy(edges.astype(np.float32)).permute(2, 0, 1)[None]
    on = edges.max(-1) > 0
    for convs, tconvs in ((False, False), (True, True), (True, False), (False, True)):
        n1 = flipped(model.net1, model.card["net1"], convs, tconvs)
        n2 = flipped(model.net2, model.card["net2"], convs, tconvs)
        with torch.no_grad():
            y = n1(x1)[0, 0].numpy() / 255
            z = torch.from_numpy(y)[None, None]
            for _ in range(args.iterations):
                z_new = n2(z * 255 - model.scaling2.input_mean)
                change = float((z_new - z).abs().mean())
                z = z_new
        print(f"   flip convs={convs!s:5s} transposed={tconvs!s:5s}: Net1 on-edge "
              f"{y[on].mean():.3f} off-edge {y[~on].mean():.3f}; Net2 change {change:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
