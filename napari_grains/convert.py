"""Convert the authors' MATLAB networks (``net1.mat``, ``net2.mat``) to the project's model format.

A development-time tool: it needs the PyPI package ``mat-io`` (the ``dev`` extra), which the
installed package never imports otherwise. Run it once to (re)produce ``models/paper``::

    python -m napari_grains.convert ../shared/paper --out models/paper

What it does, layer by layer (see ``docs/paper-model.md``):

1. Reads each ``SeriesNetwork`` with mat-io and checks that the file uses only layer classes this
   port knows (image input, 2-D convolution, batch normalisation, ReLU, 2×2 max-pooling,
   transposed convolution, clipped ReLU, regression output).
2. Walks the MATLAB layers in order against the layer plan of the card's architecture
   (:func:`layer_plan`), checking each kind, kernel size, channel count, stride and padding.
3. Copies the weights with MATLAB's layouts turned into torch's: convolution H×W×Cin×Cout ->
   (Cout, Cin, H, W); transposed convolution H×W×Cout×Cin -> (Cin, Cout, H, W); biases flattened;
   batch norm ``Scale``/``Offset``/``TrainedMean``/``TrainedVariance``/``Epsilon`` to
   ``weight``/``bias``/``running_mean``/``running_var``/``eps``. No spatial flip: MATLAB's
   convolution layers compute a correlation, as torch's do (checked on the authors' TEM image,
   see the docs).
4. Takes the input normalisation (Net2: 'zerocenter', mean 27.370562) and the clipped-ReLU
   ceilings (255, 1) from the files into the card, and writes the model with
   :func:`napari_grains.nets.save_model` (safetensors + card.json with sha256).
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_grains.errors import GrainsError
from napari_grains.nets import (
    EncoderDecoder,
    GrainModel,
    build_model,
    count_parameters,
    paper_card,
    save_model,
)

__all__ = [
    "KNOWN_LAYER_CLASSES",
    "MatLayer",
    "convert_paper",
    "layer_plan",
    "load_into",
    "main",
    "mat_layer_classes",
    "read_mat_network",
]

#: MATLAB layer classes the port understands.
KNOWN_LAYER_CLASSES = frozenset({
    "ImageInputLayer",
    "Convolution2DLayer",
    "BatchNormalizationLayer",
    "ReLULayer",
    "MaxPooling2DLayer",
    "TransposedConvolution2DLayer",
    "ClippedReLULayer",
    "RegressionOutputLayer",
})


@dataclass
class MatLayer:
    """One layer of a MATLAB ``SeriesNetwork`` as stored in the .mat file.

    Attributes
    ----------
    name : str
        The layer's ``Name``.
    kind : str
        One of ``input``, ``conv``, ``bn``, ``relu``, ``maxpool``, ``tconv``, ``clippedrelu``,
        ``regression`` (told apart by the fields each class stores).
    fields : dict
        Scalar settings (``FilterSize``, ``Stride``, ``PaddingSize``, ``Ceiling``, ...) as numpy
        arrays, and the learnables (``Weights``, ``Bias``, ``Scale``, ``Offset``, ``TrainedMean``,
        ``TrainedVariance``) as float32 arrays in MATLAB's layout.
    """

    name: str
    kind: str
    fields: dict = field(default_factory=dict)


def _matio():
    try:
        import matio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GrainsError(
            "converting the authors' .mat networks needs the package mat-io: "
            "pip install 'napari-grains[dev]' (or pip install mat-io)."
        ) from exc
    return matio


def mat_layer_classes(path: str | Path) -> set[str]:
    """Names of the MATLAB ``*Layer`` classes a v7 .mat file mentions.

    mat-io gives every layer the generic class ``nnet.cnn.layer.Layer``; the concrete class names
    sit in the file's MCOS subsystem, inside zlib-compressed elements. This scans them so the
    converter can refuse a file holding a layer type it does not port.
    """
    data = Path(path).read_bytes()
    names: set[str] = set()
    pos = 128  # after the MAT v5 header
    while pos + 8 <= len(data):
        dtype, nbytes = struct.unpack("<II", data[pos : pos + 8])
        pos += 8
        chunk = data[pos : pos + nbytes]
        if dtype == 15:  # miCOMPRESSED
            try:
                chunk = zlib.decompress(chunk)
            except zlib.error:
                chunk = b""
        names.update(m.decode() for m in re.findall(rb"\b([A-Z][A-Za-z0-9]*Layer)\b", chunk))
        pos += nbytes + (-nbytes % 8 if dtype != 15 else 0)
    names.discard("Layer")
    return names


def _learnable(value) -> np.ndarray:
    """A learnable parameter's array (mat-io gives a struct with ``Value`` or the array itself)."""
    arr = value
    if isinstance(arr, np.ndarray) and arr.dtype.names and "Value" in arr.dtype.names:
        arr = arr[0, 0]["Value"]
    return np.asarray(arr, dtype=np.float32)


def _kind(names: tuple[str, ...]) -> str:
    if "InputSize" in names:
        return "input"
    if "TrainedMean" in names:
        return "bn"
    if "CroppingMode" in names:
        return "tconv"
    if "PoolSize" in names:
        return "maxpool"
    if "Weights" in names:
        return "conv"
    if "Ceiling" in names:
        return "clippedrelu"
    if "ResponseNames" in names:
        return "regression"
    if set(names) <= {"Version", "Name"}:
        return "relu"  # the only field-less class in KNOWN_LAYER_CLASSES
    raise GrainsError(f"unsupported MATLAB layer with fields {names}; this port cannot convert it.")


def read_mat_network(path: str | Path) -> list[MatLayer]:
    """Read a MATLAB ``SeriesNetwork`` .mat file into a list of :class:`MatLayer`.

    Raises
    ------
    GrainsError
        When the file is missing, not a SeriesNetwork, or uses a layer class not ported.
    """
    path = Path(path)
    if not path.is_file():
        raise GrainsError(f"{path} does not exist; give the folder holding net1.mat and net2.mat.")
    unknown = mat_layer_classes(path) - KNOWN_LAYER_CLASSES
    if unknown:
        raise GrainsError(f"{path} uses layer classes this port does not know: {sorted(unknown)}.")
    contents = _matio().load_from_mat(str(path))
    nets = [v for k, v in contents.items() if not k.startswith("__")]
    if len(nets) != 1 or getattr(nets[0], "classname", None) != "SeriesNetwork":
        raise GrainsError(f"{path} does not hold one MATLAB SeriesNetwork.")
    layers = []
    for obj in nets[0].properties["any"][0, 0]["Layers"].ravel():
        s = obj.properties["any"][0, 0]
        names = s.dtype.names
        kind = _kind(names)
        fields = {}
        for key in names:
            if key in ("Weights", "Bias", "Scale", "Offset", "TrainedMean", "TrainedVariance"):
                fields[key] = _learnable(s[key])
            elif key not in ("Name", "Version"):
                fields[key] = s[key]
        layers.append(MatLayer(name=str(np.asarray(s["Name"]).ravel()[0]), kind=kind,
                               fields=fields))
    return layers


def layer_plan(net: EncoderDecoder) -> list[tuple[str, str | None]]:
    """The MATLAB-style layer sequence an :class:`EncoderDecoder` computes, with module paths.

    Returns ``[(kind, module_path_or_None), ...]`` in forward order, e.g.
    ``("conv", "enc.0.conv"), ("bn", "enc.0.bn"), ("relu", None), ("maxpool", None), ...``.
    Only networks without skip connections have a series equivalent.
    """
    if net.skip_connections:
        raise GrainsError("a network with skip connections has no MATLAB series equivalent.")
    plan: list[tuple[str, str | None]] = []

    def conv_block(prefix: str, block: nn.Module) -> None:
        plan.append(("conv", f"{prefix}.conv"))
        if isinstance(block.bn, nn.BatchNorm2d):
            plan.append(("bn", f"{prefix}.bn"))
        plan.append(("relu", None))

    for i, block in enumerate(net.enc):
        conv_block(f"enc.{i}", block)
        plan.append(("maxpool", None))
    for i, block in enumerate(net.bridge):
        conv_block(f"bridge.{i}", block)
    for i, block in enumerate(net.dec):
        plan.append(("tconv", f"dec.{i}.up"))
        if block.conv is None:
            plan.append(("relu", None))
        else:
            conv_block(f"dec.{i}", block)
    plan.append(("conv", "head"))
    plan.append(("clippedrelu", None))
    return plan


def _ints(a) -> list[int]:
    return [int(v) for v in np.asarray(a, dtype=float).ravel()]


def _conv_weight(layer: MatLayer, module: nn.Module, transposed: bool) -> np.ndarray:
    kh, kw = _ints(layer.fields["FilterSize"])
    cin = _ints(layer.fields["NumChannels"])[0]
    cout = _ints(layer.fields["NumFilters"])[0]
    w = layer.fields["Weights"]
    # MATLAB drops trailing singleton dimensions (conv 1x1 4->1 is stored as 1x1x4).
    if transposed:
        w = w.reshape((kh, kw, cout, cin), order="F") if w.ndim < 4 else w
        return np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # -> (Cin, Cout, kh, kw)
    w = w.reshape((kh, kw, cin, cout), order="F") if w.ndim < 4 else w
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # -> (Cout, Cin, kh, kw)


def _check(cond: bool, layer: MatLayer, what: str) -> None:
    if not cond:
        raise GrainsError(f"MATLAB layer {layer.name!r} does not fit the architecture: {what}.")


def load_into(net: EncoderDecoder, layers: list[MatLayer]) -> dict[str, str]:
    """Copy a MATLAB series network's learnables into ``net``, checking every layer.

    Parameters
    ----------
    net : EncoderDecoder
        Built from the card (no skip connections).
    layers : list of MatLayer
        From :func:`read_mat_network`.

    Returns
    -------
    dict
        Module path -> MATLAB layer name, for each module that received weights.

    Raises
    ------
    GrainsError
        When the sequence, a shape, a stride or a padding does not match.
    """
    body = [lay for lay in layers if lay.kind not in ("input", "regression")]
    plan = layer_plan(net)
    if [k for k, _ in plan] != [lay.kind for lay in body]:
        raise GrainsError(
            "the MATLAB layer sequence does not match the card's architecture:\n"
            f"  file: {[lay.kind for lay in body]}\n  card: {[k for k, _ in plan]}"
        )
    modules = dict(net.named_modules())
    mapping: dict[str, str] = {}
    with torch.no_grad():
        for (kind, path), layer in zip(plan, body):
            f = layer.fields
            if kind in ("conv", "tconv"):
                mod = modules[path]
                w = _conv_weight(layer, mod, transposed=kind == "tconv")
                _check(tuple(w.shape) == tuple(mod.weight.shape), layer,
                       f"weights {w.shape} vs {tuple(mod.weight.shape)}")
                _check(_ints(f["Stride"]) == list(mod.stride), layer, "stride")
                if kind == "conv":
                    _check(_ints(f["DilationFactor"]) == [1, 1], layer, "dilation")
                    kh, kw = mod.kernel_size
                    want = [(kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2]
                    _check(_ints(f["PaddingSize"]) == want, layer, "'same' padding")
                    _check(float(np.asarray(f["PaddingValue"]).ravel()[0]) == 0.0, layer,
                           "zero padding")
                else:
                    _check(_ints(f["CroppingSize"]) == [0, 0, 0, 0], layer, "no cropping")
                b = f["Bias"].reshape(-1)
                _check(b.size == mod.bias.numel(), layer, "bias size")
                mod.weight.copy_(torch.from_numpy(w))
                mod.bias.copy_(torch.from_numpy(b.copy()))
                mapping[path] = layer.name
            elif kind == "bn":
                mod = modules[path]
                for src, dst in (("Scale", "weight"), ("Offset", "bias"),
                                 ("TrainedMean", "running_mean"),
                                 ("TrainedVariance", "running_var")):
                    v = f[src].reshape(-1)
                    t = getattr(mod, dst)
                    _check(v.size == t.numel(), layer, f"{src} size")
                    t.copy_(torch.from_numpy(v.copy()))
                mod.eps = float(np.asarray(f["Epsilon"]).ravel()[0])
                mapping[path] = layer.name
            elif kind == "maxpool":
                _check(_ints(f["PoolSize"]) == [2, 2] and _ints(f["Stride"]) == [2, 2], layer,
                       "max-pool 2×2 stride 2")
                _check(_ints(f["PaddingSize"]) == [0, 0, 0, 0], layer, "no pooling padding")
            elif kind == "clippedrelu":
                ceiling = float(np.asarray(f["Ceiling"]).ravel()[0])
                _check(ceiling == net.ceiling, layer, f"ceiling {ceiling} vs card {net.ceiling}")
    return mapping


def _input_mean(layers: list[MatLayer]) -> float:
    """The 'zerocenter' mean of the image input layer (0 when it normalises nothing)."""
    norm = layers[0].fields.get("Normalization")
    if norm is None or not isinstance(norm, np.ndarray) or norm.size == 0 or not norm.dtype.names:
        return 0.0
    rec = norm.ravel()[0]
    kind = str(np.asarray(rec["Type"]).ravel()[0])
    if kind == "none":
        return 0.0
    if kind != "zerocenter":
        raise GrainsError(f"input normalisation {kind!r} is not ported (only 'zerocenter').")
    avg = np.asarray(rec["AverageImage"], dtype=np.float64)
    if avg.size != 1:
        raise GrainsError("a per-pixel average image is not ported (only a scalar mean).")
    return float(avg.ravel()[0])


def convert_paper(source: str | Path, out: str | Path | None = None) -> GrainModel:
    """Convert ``net1.mat`` and ``net2.mat`` in ``source`` to the model named ``paper``.

    Parameters
    ----------
    source : path-like
        Folder holding the authors' ``net1.mat`` and ``net2.mat``.
    out : path-like, optional
        Where to write the model folder (e.g. ``models/paper``); nothing is written when None.

    Returns
    -------
    GrainModel
        The converted model (eval mode).
    """
    source = Path(source)
    card = paper_card()
    layers = {k: read_mat_network(source / f"{k}.mat") for k in ("net1", "net2")}
    for key in ("net1", "net2"):
        lay = layers[key]
        ceil = [lay_.fields["Ceiling"] for lay_ in lay if lay_.kind == "clippedrelu"]
        if len(ceil) != 1:
            raise GrainsError(f"{key}.mat should end in one clipped ReLU; found {len(ceil)}.")
        card[key]["params"]["ceiling"] = float(np.asarray(ceil[0]).ravel()[0])
        # the file stores the mean as float32 (27.370562 for Net2); keep exactly that value
        card[key]["input_mean"] = float(np.float32(_input_mean(lay)))
        card[key]["matlab_input_size"] = _ints(lay[0].fields["InputSize"])
    model = build_model(card, name="paper")
    mappings = {}
    for key in ("net1", "net2"):
        mappings[key] = load_into(getattr(model, key), layers[key])
    card["conversion"] = {
        "tool": "python -m napari_grains.convert <folder with net1.mat, net2.mat> --out "
        "models/paper",
        "layers": mappings,
        "parameters": {k: count_parameters(getattr(model, k)) for k in ("net1", "net2")},
    }
    model.card = card
    model.net1.eval()
    model.net2.eval()
    if out is not None:
        save_model(model, out)
        model.path = Path(out)
    return model


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m napari_grains.convert SOURCE --out FOLDER``."""
    parser = argparse.ArgumentParser(
        prog="python -m napari_grains.convert",
        description="Convert the authors' net1.mat/net2.mat to a napari-grains model folder.",
    )
    parser.add_argument("source", help="folder holding net1.mat and net2.mat")
    parser.add_argument("--out", default="models/paper", help="model folder to write")
    args = parser.parse_args(argv)
    try:
        model = convert_paper(args.source, args.out)
    except GrainsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    params = model.card["conversion"]["parameters"]
    print(f"wrote {args.out}: Net1 {params['net1']:,} parameters, Net2 {params['net2']:,} "
          f"parameters, Net2 input mean {model.card['net2']['input_mean']}")
    for name, entry in model.card["files"].items():
        print(f"  {name} sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
