"""An independent re-implementation of the authors' MATLAB networks, for verifying the port.

It shares no code with ``napari_grains.convert`` or ``napari_grains.nets``: it reads the raw
layer structs of ``net1.mat`` / ``net2.mat`` with mat-io itself and computes every layer with
plain numpy in float64, in MATLAB's own layouts (images H×W×C, conv weights H×W×Cin×Cout,
transposed-conv weights H×W×Cout×Cin), following the MATLAB documentation of each layer:

- convolution2dLayer, 'same' padding with zeros: ``y[i,j,o] = b[o] + sum_{a,b,c}
  x[i+a-pt, j+b-pl, c] W[a,b,c,o]`` (a correlation, as in cuDNN, which MATLAB uses);
- transposedConv2dLayer, stride s, no cropping: ``y[s*i+a, s*j+b, o] += x[i,j,c] W[a,b,o,c]``;
- batchNormalizationLayer at inference: ``Scale * (x - TrainedMean) / sqrt(TrainedVariance +
  Epsilon) + Offset``;
- maxPooling2dLayer 2×2 stride 2; reluLayer; clippedReluLayer ``min(max(x,0), Ceiling)``;
- imageInputLayer 'zerocenter': subtract ``AverageImage``.

Used by ``tests/test_nets.py`` and ``benchmarks/check_paper_port.py`` (which prints the
layer-by-layer comparison on the authors' TEM image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LEARNABLE = ("Weights", "Bias", "Scale", "Offset", "TrainedMean", "TrainedVariance")


def read_layers(path: str | Path) -> list[dict]:
    """Every layer of the SeriesNetwork in ``path`` as a dict of its raw fields."""
    import matio

    contents = matio.load_from_mat(str(path))
    (net,) = [v for k, v in contents.items() if not k.startswith("__")]
    out = []
    for obj in net.properties["any"][0, 0]["Layers"].ravel():
        s = obj.properties["any"][0, 0]
        d = {}
        for key in s.dtype.names:
            v = s[key]
            if key in LEARNABLE:
                if isinstance(v, np.ndarray) and v.dtype.names:
                    v = v[0, 0]["Value"]
                v = np.asarray(v, dtype=np.float64)
            d[key] = v
        d["Name"] = str(np.asarray(d["Name"]).ravel()[0])
        out.append(d)
    return out


def _vec(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).ravel()


def conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: list[int]) -> np.ndarray:
    """MATLAB conv, stride 1: x (H,W,Cin), w (kh,kw,Cin,Cout), pad [top,bottom,left,right]."""
    kh, kw, cin, cout = w.shape
    h, wd, _ = x.shape
    xp = np.zeros((h + pad[0] + pad[1], wd + pad[2] + pad[3], cin))
    xp[pad[0] : pad[0] + h, pad[2] : pad[2] + wd] = x
    ho, wo = xp.shape[0] - kh + 1, xp.shape[1] - kw + 1
    y = np.zeros((ho, wo, cout))
    for a in range(kh):
        for c in range(kw):
            y += np.einsum("hwi,io->hwo", xp[a : a + ho, c : c + wo], w[a, c])
    return y + b


def conv_transposed(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """MATLAB transposed conv, no cropping: x (H,W,Cin), w (kh,kw,Cout,Cin)."""
    kh, kw, cout, _ = w.shape
    h, wd, _ = x.shape
    y = np.zeros(((h - 1) * stride + kh, (wd - 1) * stride + kw, cout))
    for i in range(h):
        for j in range(wd):
            y[i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum(
                "abki,i->abk", w, x[i, j]
            )
    return y + b


def max_pool2(x: np.ndarray) -> np.ndarray:
    """2×2 max-pool, stride 2 (H, W even)."""
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def run(layers: list[dict], image: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """Run the series network on ``image`` (H, W, C) in MATLAB's input units.

    Returns
    -------
    list of (layer name, layer kind, activation (H, W, C)) after every layer.
    """
    x = np.asarray(image, dtype=np.float64)
    acts = []
    for lay in layers:
        keys = set(lay)
        if "InputSize" in keys:
            kind = "input"
            norm = lay["Normalization"]
            if isinstance(norm, np.ndarray) and norm.size and norm.dtype.names:
                rec = norm.ravel()[0]
                assert str(np.asarray(rec["Type"]).ravel()[0]) == "zerocenter"
                x = x - np.asarray(rec["AverageImage"], dtype=np.float64)
        elif "TrainedMean" in keys:
            kind = "bn"
            eps = float(_vec(lay["Epsilon"])[0])
            x = (_vec(lay["Scale"]) * (x - _vec(lay["TrainedMean"]))
                 / np.sqrt(_vec(lay["TrainedVariance"]) + eps) + _vec(lay["Offset"]))
        elif "CroppingMode" in keys:
            kind = "tconv"
            kh, kw = (int(v) for v in _vec(lay["FilterSize"]))
            cin, cout = int(_vec(lay["NumChannels"])[0]), int(_vec(lay["NumFilters"])[0])
            w = lay["Weights"].reshape((kh, kw, cout, cin), order="F")
            assert not _vec(lay["CroppingSize"]).any()
            x = conv_transposed(x, w, _vec(lay["Bias"]), int(_vec(lay["Stride"])[0]))
        elif "PoolSize" in keys:
            kind = "maxpool"
            assert list(_vec(lay["PoolSize"])) == [2, 2] and list(_vec(lay["Stride"])) == [2, 2]
            x = max_pool2(x)
        elif "Weights" in keys:
            kind = "conv"
            kh, kw = (int(v) for v in _vec(lay["FilterSize"]))
            cin, cout = int(_vec(lay["NumChannels"])[0]), int(_vec(lay["NumFilters"])[0])
            w = lay["Weights"].reshape((kh, kw, cin, cout), order="F")
            assert list(_vec(lay["Stride"])) == [1, 1]
            x = conv_same(x, w, _vec(lay["Bias"]), [int(v) for v in _vec(lay["PaddingSize"])])
        elif "Ceiling" in keys:
            kind = "clippedrelu"
            x = np.clip(x, 0.0, float(_vec(lay["Ceiling"])[0]))
        elif "ResponseNames" in keys:
            kind = "regression"
        else:
            kind = "relu"
            x = np.maximum(x, 0.0)
        acts.append((lay["Name"], kind, x))
    return acts


def mean_and_ceiling(layers: list[dict]) -> tuple[float, float]:
    """(input 'zerocenter' mean or 0, output clipped-ReLU ceiling) read from the raw layers."""
    mean = 0.0
    norm = layers[0]["Normalization"]
    if isinstance(norm, np.ndarray) and norm.size and norm.dtype.names:
        mean = float(_vec(norm.ravel()[0]["AverageImage"])[0])
    ceiling = [float(_vec(lay["Ceiling"])[0]) for lay in layers if "Ceiling" in lay]
    return mean, ceiling[0]


def n_learnables(layers: list[dict]) -> int:
    """Learnable parameter count as MATLAB counts it (weights, biases, BN scale and offset)."""
    return int(sum(lay[k].size for lay in layers for k in ("Weights", "Bias", "Scale", "Offset")
                   if k in lay))
