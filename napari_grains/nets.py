"""Net1 and Net2: the two networks of the paper, built from a model card, and their weights on disk.

A model is a folder ``models/<name>/`` (or any folder a user points at) holding

- ``net1.safetensors`` -- Net1, the *initial guess*: edge stack (3 channels, 0/255) -> boundary map;
- ``net2.safetensors`` -- Net2, the *refinement* (the paper's diffusion model), applied again and
  again to its own output;
- ``card.json`` -- what the networks are (architecture name and parameters), how their inputs and
  outputs are scaled, how they were trained, what they scored, and the sha256 of each weights file.

The architecture is chosen by the card, never by code edits: :data:`ARCHITECTURES` maps a name to an
``nn.Module`` class whose keyword arguments are the card's ``params``. The one architecture shipped,
``"encoder_decoder"``, covers both of the authors' networks (see ``docs/paper-model.md`` for the
layer table) and the project's variants (skip connections, other widths, depths and kernels).

Scaling lives in the card and is applied inside :meth:`GrainModel.initial_guess` and
:meth:`GrainModel.refine`, so the pipeline and training see one convention for every model:
edges in 0..255 in, boundary probability in [0, 1] out.

Examples
--------
>>> import torch
>>> from napari_grains.nets import load_model
>>> model = load_model("paper")
>>> edges = torch.zeros(1, 3, 96, 496)          # the 0/255 edge stack, (N, 3, H, W)
>>> guess = model.initial_guess(edges)          # (1, 1, 96, 496) in [0, 1]
>>> better = model.refine(guess)                # one Net2 iteration
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from napari_grains.errors import GrainsError
from napari_grains.io import atomic_write, sha256_file

__all__ = [
    "ARCHITECTURES",
    "CARD_FORMAT",
    "MODELS_DIR",
    "EncoderDecoder",
    "GrainModel",
    "NetScaling",
    "build_model",
    "build_net",
    "count_parameters",
    "fuse_batch_norm",
    "list_models",
    "load_model",
    "optimize_for_inference",
    "paper_card",
    "resolve_model_path",
    "reuse_freed_memory",
    "save_model",
    "sha256_file",
]

#: Folder of the models shipped with the package (``napari_grains/models`` -> ``../models``).
MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Version of the card layout written by :func:`save_model`.
CARD_FORMAT = 1

_NETS = ("net1", "net2")


# --------------------------------------------------------------------------------------------
# the networks
# --------------------------------------------------------------------------------------------


class _ConvBlock(nn.Module):
    """conv k×k 'same' -> (batch norm) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5) if batch_norm else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _UpBlock(nn.Module):
    """transposed conv 2×2 stride 2 -> ((skip concat) conv -> (batch norm)) -> ReLU."""

    def __init__(
        self, cin: int, cout: int, skip: int, conv_kernel: int | None, batch_norm: bool
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.skip = skip
        if conv_kernel:
            self.conv = nn.Conv2d(cout + skip, cout, conv_kernel, padding=conv_kernel // 2)
            self.bn = nn.BatchNorm2d(cout, eps=1e-5) if batch_norm else nn.Identity()
        else:
            self.conv = None
            self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.up(x)
        if self.conv is None:
            y = self.act(y)
            if skip is not None:
                y = torch.cat([y, skip], dim=1)
            return y
        if skip is not None:
            y = torch.cat([y, skip], dim=1)
        return self.act(self.bn(self.conv(y)))


class EncoderDecoder(nn.Module):
    """A fully convolutional encoder-decoder; both of the paper's networks are instances.

    Encoder stage *i*: conv ``encoder_kernels[i]`` 'same' -> (batch norm) -> ReLU -> max-pool 2×2.
    Bridge (optional): conv ``bridge_kernel`` -> (batch norm) -> ReLU at ``bridge_width``.
    Decoder stage *i*: transposed conv 2×2 stride 2 to ``decoder_widths[i]`` -> then either ReLU
    (``decoder_conv_kernel`` None, Net2) or conv ``decoder_conv_kernel`` 'same' -> (batch norm)
    -> ReLU (Net1). Head: conv 1×1 -> clipped ReLU ``min(max(x, 0), ceiling)``.

    With ``skip_connections`` the decoder concatenates the matching encoder features (before
    pooling) after each up-sampling, U-Net style; the authors' networks have none.

    Parameters
    ----------
    in_channels : int
        Channels of the input (3 for the edge stack, 1 for a boundary map).
    encoder_widths : list of int
        Output channels of each encoder stage; its length is the depth (number of max-pools).
    encoder_kernels : int or list of int
        Kernel size of each encoder conv (odd), one per stage or one for all.
    decoder_widths : list of int
        Output channels of each decoder stage; same length as ``encoder_widths``.
    decoder_conv_kernel : int or None
        Kernel of the conv after each up-sampling; None for none (then ReLU follows the
        transposed conv directly).
    bridge_width : int or None
        Width of the conv between encoder and decoder; None for none.
    bridge_kernel : int
        Kernel of the bridge conv.
    batch_norm : bool
        Batch norm after every conv except the head.
    skip_connections : bool
        Concatenate encoder features into the decoder.
    ceiling : float
        Ceiling of the output clipped ReLU (255 for Net1, 1 for Net2 of the paper).
    out_channels : int
        Channels of the output (1).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        encoder_widths: list[int],
        encoder_kernels: int | list[int] = 3,
        decoder_widths: list[int],
        decoder_conv_kernel: int | None = 3,
        bridge_width: int | None = None,
        bridge_kernel: int = 3,
        batch_norm: bool = True,
        skip_connections: bool = False,
        ceiling: float = 1.0,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        depth = len(encoder_widths)
        if isinstance(encoder_kernels, int):
            encoder_kernels = [encoder_kernels] * depth
        if depth < 1 or len(decoder_widths) != depth or len(encoder_kernels) != depth:
            raise GrainsError(
                "model card: encoder_widths, encoder_kernels and decoder_widths must have the "
                f"same non-zero length (got {depth}, {len(encoder_kernels)}, "
                f"{len(decoder_widths)}); fix the card's 'params'."
            )
        for k in [*encoder_kernels, bridge_kernel, decoder_conv_kernel or 1]:
            if k < 1 or k % 2 == 0:
                raise GrainsError(f"model card: kernel sizes must be odd and positive (got {k}).")
        self.depth = depth
        self.ceiling = float(ceiling)
        self.skip_connections = bool(skip_connections)

        self.enc = nn.ModuleList()
        c = in_channels
        for w, k in zip(encoder_widths, encoder_kernels):
            self.enc.append(_ConvBlock(c, w, k, batch_norm))
            c = w
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bridge = nn.ModuleList()
        if bridge_width:
            self.bridge.append(_ConvBlock(c, bridge_width, bridge_kernel, batch_norm))
            c = bridge_width
        self.dec = nn.ModuleList()
        skips = list(reversed(encoder_widths)) if skip_connections else [0] * depth
        for w, s in zip(decoder_widths, skips):
            self.dec.append(_UpBlock(c, w, s, decoder_conv_kernel, batch_norm))
            c = w if decoder_conv_kernel else w + s
        self.head = nn.Conv2d(c, out_channels, 1)

    @property
    def multiple(self) -> int:
        """Height and width of an input must be multiples of this (``2 ** depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) to (N, 1, H, W) in [0, ceiling]; H, W multiples of ``multiple``."""
        feats = []
        for block in self.enc:
            x = block(x)
            feats.append(x)
            x = self.pool(x)
        for block in self.bridge:
            x = block(x)
        for block, f in zip(self.dec, reversed(feats)):
            x = block(x, f if self.skip_connections else None)
        return torch.clamp(self.head(x), 0.0, self.ceiling)


#: Architecture name (the card's ``"architecture"``) -> ``nn.Module`` class taking ``params``.
ARCHITECTURES: dict[str, type[nn.Module]] = {"encoder_decoder": EncoderDecoder}


def build_net(spec: dict) -> nn.Module:
    """Build one network, randomly initialised, from its card entry.

    Parameters
    ----------
    spec : dict
        ``{"architecture": name, "params": {...}, ...}``, e.g. ``card["net1"]``.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    GrainsError
        Unknown architecture or parameters it does not take.
    """
    name = spec.get("architecture")
    if name not in ARCHITECTURES:
        raise GrainsError(
            f"model card names architecture {name!r}, which this version of napari-grains does "
            f"not know (known: {', '.join(sorted(ARCHITECTURES))}); upgrade napari-grains or "
            "fix the card."
        )
    try:
        return ARCHITECTURES[name](**spec.get("params", {}))
    except TypeError as exc:
        raise GrainsError(f"model card: bad parameters for {name!r}: {exc}; fix the card.") from exc


def count_parameters(net: nn.Module) -> int:
    """Number of learnable parameters (batch-norm running statistics excluded)."""
    return sum(p.numel() for p in net.parameters())


def fuse_batch_norm(net: nn.Module) -> nn.Module:
    """Return an inference-only copy of ``net`` with every batch norm folded into its conv.

    ``y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` is one conv with scaled weights and
    a shifted bias, so the copy does the same arithmetic with fewer passes over memory. The
    input network is not changed.
    """
    fused = copy.deepcopy(net).eval()
    for mod in fused.modules():
        conv = getattr(mod, "conv", None)
        bn = getattr(mod, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            with torch.no_grad():
                s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(s.reshape(-1, 1, 1, 1))
                b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.bias = nn.Parameter((b - bn.running_mean) * s + bn.bias)
            mod.bn = nn.Identity()
    return fused


class _Pointwise(nn.Module):
    """A 1×1 convolution as one einsum: the same arithmetic as ``nn.Conv2d(c, o, 1)``.

    torch's CPU convolution takes a slow path for a 1×1 conv with a handful of channels on a
    large image (the heads: 8→1 and 4→1); the einsum is about ten times faster there
    (``benchmarks/bench_nets.py``).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach()[:, :, 0, 0].clone(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias.clone().reshape(1, -1, 1, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,oc->nohw", x, self.weight) + self.bias


#: Smallest kernel that :func:`optimize_for_inference` runs through FFTs (few input channels).
FFT_MIN_KERNEL = 11
#: Most input channels of a conv that :func:`optimize_for_inference` runs through FFTs.
FFT_MAX_IN_CHANNELS = 4


class _FFTConv(nn.Module):
    """A 'same' zero-padded k×k convolution with few input channels, computed with FFTs.

    The same arithmetic as the ``nn.Conv2d`` it replaces (cross-correlation, zero padding
    ``k // 2``, bias), up to float rounding (about 1e-6 of the output's magnitude). torch's CPU
    convolution runs a 15×15 kernel on one input channel far below the machine's peak (the first
    conv of the paper's Net2 was 57 % of a Net2 pass); here the cost is one forward transform per
    input channel and one inverse transform per output channel, whatever the kernel size
    (``benchmarks/bench_nets.py``). The kernels' spectra are kept for the last ``_CACHE`` image
    sizes (tiles of a big image come in up to four sizes); at 2048² one entry of the paper's
    Net2 holds 68 MB.
    """

    _CACHE = 4
    _lock = threading.Lock()  # the cache may be shared by extractions in several threads

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.kernel = int(conv.kernel_size[0])
        # flipped kernels: correlation = convolution with the flipped kernel
        w = torch.flip(conv.weight.detach(), dims=(-2, -1)).clone()
        self.register_buffer("weight_flipped", w, persistent=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.clone().reshape(1, -1, 1, 1), persistent=False)
        self._spectra: dict[tuple, torch.Tensor] = {}

    @staticmethod
    def _fast_len(n: int) -> int:
        """Smallest 2^a·3^b·5^c·7^d >= ``n`` (sizes the FFT handles fastest)."""
        m = n
        while True:
            r = m
            for f in (2, 3, 5, 7):
                while r % f == 0:
                    r //= f
            if r == 1:
                return m
            m += 1

    def _spectrum(self, fh: int, fw: int) -> torch.Tensor:
        w = self.weight_flipped
        key = (fh, fw, w.device, w.dtype)
        with self._lock:
            spec = self._spectra.pop(key, None)
        if spec is None:
            spec = torch.fft.rfft2(w.contiguous(), s=(fh, fw))  # (O, C, fh, fw//2+1)
        with self._lock:
            self._spectra[key] = spec  # most recently used last
            while len(self._spectra) > self._CACHE:
                self._spectra.pop(next(iter(self._spectra)))
        return spec

    #: Transforms with fewer points than this run on one thread, through SciPy, on CPU.
    _SMALL = 1 << 19

    @classmethod
    def _rfft2(cls, x: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
        """``torch.fft.rfft2(x, s=(fh, fw))``; on CPU through SciPy's pocketfft.

        torch's CPU forward real FFT (MKL) of a 96×496 map costs more than ten times SciPy's
        one-thread pocketfft as soon as torch runs two threads (``benchmarks/bench_nets.py
        --fft``); at large sizes the two are on par.
        """
        if x.device.type != "cpu":
            return torch.fft.rfft2(x, s=(fh, fw))
        import scipy.fft

        workers = 1 if fh * fw < cls._SMALL else max(1, torch.get_num_threads())
        return torch.from_numpy(scipy.fft.rfft2(x.detach().numpy(), s=(fh, fw), workers=workers))

    @classmethod
    def _irfft2(cls, xf: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
        """``torch.fft.irfft2(xf, s=(fh, fw))``; small ones on CPU on one thread (SciPy)."""
        if xf.device.type != "cpu" or fh * fw >= cls._SMALL:
            return torch.fft.irfft2(xf, s=(fh, fw))
        import scipy.fft

        return torch.from_numpy(scipy.fft.irfft2(xf.detach().numpy(), s=(fh, fw), workers=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = self.kernel // 2
        # a transform of h + p points suffices: the circular wrap-around of the full
        # convolution (h + k - 1 points) lands on outputs 0 .. p - 1, which are cut off
        fh, fw = self._fast_len(h + p), self._fast_len(w + p)
        spec = self._spectrum(fh, fw)
        xf = self._rfft2(x.contiguous().to(spec.real.dtype), fh, fw)  # (N, C, fh, fw//2+1)
        n_out = spec.shape[0]
        out = torch.empty((x.shape[0], n_out, h, w), dtype=spec.real.dtype, device=x.device)
        # one inverse transform per output map: torch's batched irfft2 costs up to ~2.7× the
        # CPU of a loop over single maps (2048², benchmarks/bench_nets.py --fft)
        for n in range(x.shape[0]):
            for o in range(n_out):
                yf = (xf[n] * spec[o]).sum(0) if xf.shape[1] > 1 else xf[n, 0] * spec[o, 0]
                # full convolution index i + p is the 'same' output i
                out[n, o] = self._irfft2(yf, fh, fw)[p : p + h, p : p + w]
        return out.add_(self.bias)


class _MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2, stride=2)`` as two element-wise maxima over strided views.

    The same result (floor mode: an odd last row or column is dropped); torch's CPU max-pool
    kernel is 4-10× slower than this on few-channel maps (``benchmarks/bench_nets.py``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _is_plain_pool2(mod: nn.Module) -> bool:
    def pair(v: object) -> tuple:
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    return (isinstance(mod, nn.MaxPool2d) and pair(mod.kernel_size) == (2, 2)
            and pair(mod.stride) == (2, 2) and pair(mod.padding) == (0, 0)
            and pair(mod.dilation) == (1, 1) and not mod.ceil_mode and not mod.return_indices)


def _fft_worthwhile(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.kernel_size[0] >= FFT_MIN_KERNEL
            and conv.in_channels <= FFT_MAX_IN_CHANNELS
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding == (conv.kernel_size[0] // 2,) * 2
            and conv.padding_mode == "zeros")


def optimize_for_inference(net: nn.Module, *, channels_last: bool = True,
                           fft: bool = True, pool: bool = True) -> nn.Module:
    """An eval-mode copy of ``net`` for inference: batch norm fused, 1×1 convs as einsums,
    2×2 max-pools as element-wise maxima, big few-channel convs through FFTs.

    Computes the same function as ``net.eval()`` (up to float rounding); ``net`` is unchanged.
    With ``channels_last`` the copy's weights use torch's channels-last memory format (feed it
    channels-last inputs too); convolutions and max-pooling run faster that way on CPU
    (``benchmarks/bench_nets.py``). With ``fft``, 'same' convolutions with big kernels
    (``FFT_MIN_KERNEL`` and up) and few input channels (``FFT_MAX_IN_CHANNELS``) run through
    FFTs (the 15×15 first conv of the paper's Net2: about 2-4× faster). With ``pool``, 2×2
    max-pools become two element-wise maxima.
    """
    fast = fuse_batch_norm(net)
    for parent in list(fast.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
                    and child.stride == (1, 1) and child.groups == 1):
                setattr(parent, name, _Pointwise(child))
            elif fft and _fft_worthwhile(child):
                setattr(parent, name, _FFTConv(child))
            elif pool and _is_plain_pool2(child):
                setattr(parent, name, _MaxPool2x2())
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


# glibc mallopt parameters and their defaults (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_alloc_lock = threading.Lock()
_alloc_users = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (which has ``mallopt``), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 -- both must exist
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """While inside, the C allocator keeps freed memory for reuse instead of unmapping it.

    Every Net2 pass allocates and frees the same large buffers (16 MB per map at 2048²). glibc
    serves such blocks with ``mmap`` and returns them to the system on ``free``, so the next
    pass pays a page fault per 4 kB page again: a third of a Net2 pass's CPU time at 2048²
    went to the kernel (``benchmarks/bench_extract.py``). Inside this block large blocks come
    from the heap and freed memory stays there for the next pass (the process's peak memory
    grows by about one pass's buffers); on leaving the last such block glibc's defaults are
    restored and the freed memory is handed back (``malloc_trim``). Nested and concurrent
    uses are counted. Does nothing where the C library is not glibc.
    """
    global _alloc_users
    libc = _glibc()
    if libc is None:
        yield
        return
    with _alloc_lock:
        _alloc_users += 1
        if _alloc_users == 1:
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            libc.mallopt(_M_MMAP_MAX, 0)
    try:
        yield
    finally:
        with _alloc_lock:
            _alloc_users -= 1
            if _alloc_users == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


# --------------------------------------------------------------------------------------------
# the model: two nets + card
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetScaling:
    """How a net's input and output relate to the pipeline's conventions.

    ``net_input = x * input_scale - input_mean`` and ``result = net_output / output_scale``
    (then clipped to [0, 1]).

    Attributes
    ----------
    input_scale : float
        For Net1, ``x`` is the 0..255 edge stack; for Net2, ``x`` is a map in [0, 1].
    input_mean : float
        Subtracted after scaling (the paper's Net2: 'zerocenter', 27.370562).
    output_scale : float
        The net's output range (255 for the paper's Net1, 1 for its Net2).
    """

    input_scale: float = 1.0
    input_mean: float = 0.0
    output_scale: float = 1.0

    @classmethod
    def from_spec(cls, spec: dict) -> NetScaling:
        """Read the scaling fields of a card entry (missing ones take their defaults)."""
        return cls(
            input_scale=float(spec.get("input_scale", 1.0)),
            input_mean=float(spec.get("input_mean", 0.0)),
            output_scale=float(spec.get("output_scale", 1.0)),
        )


class GrainModel:
    """A loaded model: Net1, Net2, their card, and the device they live on.

    Pass it around; nothing is global. :meth:`initial_guess` and :meth:`refine` apply the
    card's scaling, so callers always hand in edges in 0..255 and maps in [0, 1].

    Attributes
    ----------
    name : str
        Model name (``"paper"``, ``"default"``'s target, or a folder name).
    card : dict
        The model card (see ``docs/paper-model.md``).
    path : Path or None
        Folder it was loaded from; None for a model built in memory.
    net1, net2 : torch.nn.Module
        The networks (trainable; :meth:`initial_guess`/:meth:`refine` run them in eval mode).
    device : torch.device
    """

    def __init__(
        self,
        name: str,
        card: dict,
        net1: nn.Module,
        net2: nn.Module,
        *,
        path: Path | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.name = name
        self.card = card
        self.path = path
        self.net1 = net1
        self.net2 = net2
        self.scaling1 = NetScaling.from_spec(card["net1"])
        self.scaling2 = NetScaling.from_spec(card["net2"])
        self.device = torch.device("cpu")
        self._fused: dict[str, tuple[tuple, nn.Module]] = {}
        self.to(device or "cpu")

    def __repr__(self) -> str:
        return f"GrainModel(name={self.name!r}, path={self.path!s}, device={self.device!s})"

    @property
    def multiple(self) -> int:
        """Height and width given to the nets must be multiples of this (16 for the paper)."""
        return max(getattr(n, "multiple", 1) for n in (self.net1, self.net2))

    def to(self, device: torch.device | str) -> GrainModel:
        """Move both nets to ``device`` (in place) and return self.

        Raises
        ------
        GrainsError
            When ``device`` is not a device name or this machine's torch cannot use it.
        """
        try:
            dev = torch.device(device)
            self.net1.to(dev)
            self.net2.to(dev)
        except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
            if hasattr(self, "device"):  # put back a net that moved before the failure
                self.net1.to(self.device)
                self.net2.to(self.device)
            why = (str(exc).strip().splitlines() or [""])[0]
            raise GrainsError(f"cannot use device {device!r}: {why}. Use 'cpu', or 'cuda' "
                              "on a machine with an NVIDIA GPU and a CUDA build of torch.") from exc
        self.device = dev
        self._fused.clear()
        return self

    def _check(self, x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GrainsError(
                f"{what} must be a tensor of shape (N, {channels}, H, W); got {shape}."
            )
        m = self.multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise GrainsError(
                f"{what} height and width must be multiples of {m} (got {x.shape[2]}×"
                f"{x.shape[3]}); pad the image (napari_grains.extract does this for you)."
            )
        return x.to(self.device, torch.float32)

    def _inference_net(self, key: str) -> nn.Module:
        net = getattr(self, key)
        # Every in-place change of a weight or statistic (optimizer step, load_state_dict, BN
        # update in train mode) bumps its tensor's version counter, so a stale fused copy is
        # never used.
        stamp = tuple((id(t), t._version) for t in net.state_dict(keep_vars=True).values())
        cached = self._fused.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, optimize_for_inference(net))
            self._fused[key] = cached
        return cached[1]

    def _run(self, key: str, x: torch.Tensor, scaling: NetScaling, grad: bool) -> torch.Tensor:
        z = x * scaling.input_scale - scaling.input_mean
        if grad:
            y = getattr(self, key)(z)
        else:
            net = self._inference_net(key)
            with torch.inference_mode():
                y = net(z.contiguous(memory_format=torch.channels_last)).contiguous()
        return torch.clamp(y / scaling.output_scale, 0.0, 1.0)

    def initial_guess(self, edges: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """Run Net1 on an edge stack.

        Parameters
        ----------
        edges : Tensor, shape (N, 3, H, W)
            The edge stack (Sobel, LoG, Canny) as 0/255 floats; H and W multiples of
            :attr:`multiple`.
        grad : bool
            False (default): inference -- no autograd, an eval-mode copy of the net made by
            :func:`optimize_for_inference` (re-made whenever the weights change). True: run the
            trainable ``net1`` as it is (train or eval mode is the caller's), keeping gradients.

        Returns
        -------
        Tensor, shape (N, 1, H, W)
            Boundary probability in [0, 1].
        """
        return self._run("net1", self._check(edges, 3, "edges"), self.scaling1, grad)

    @property
    def net2_channels(self) -> int:
        """Input channels of Net2: 1, the boundary map (the paper's), or 2, the map and
        Net1's initial guess, which a *conditioned* Net2 sees again at every iteration
        (build its input with :meth:`net2_input`)."""
        return int(self.card["net2"].get("params", {}).get("in_channels", 1))

    def net2_input(self, state: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        """Net2's input for the map ``state`` of an image whose Net1 map is ``initial``.

        Both ``(N, 1, H, W)``; the result is ``state`` itself for a one-channel Net2 and the
        two stacked on the channel axis for a conditioned one.
        """
        if self.net2_channels == 1:
            return state
        return torch.cat([state, initial.to(state.device, state.dtype)], dim=1)

    def refine(self, x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """One Net2 iteration on a boundary map.

        Parameters
        ----------
        x : Tensor, shape (N, C, H, W), C = :attr:`net2_channels`
            Boundary probability in [0, 1] (and, for a conditioned Net2, Net1's map in the
            second channel: :meth:`net2_input`); H and W multiples of :attr:`multiple`.
        grad : bool
            As for :meth:`initial_guess`.

        Returns
        -------
        Tensor, shape (N, 1, H, W) in [0, 1]
        """
        return self._run("net2", self._check(x, self.net2_channels, "Net2's input"),
                         self.scaling2, grad)

    def invalidate(self) -> None:
        """Forget the fused inference copies (they are also re-made when weights change)."""
        self._fused.clear()


# --------------------------------------------------------------------------------------------
# cards, files
# --------------------------------------------------------------------------------------------


def paper_card() -> dict:
    """The card of the authors' networks (architecture, scaling, preprocessing, training).

    ``files`` (the sha256 of each weights file) is filled in by :func:`save_model`.
    """
    return {
        "format": CARD_FORMAT,
        "name": "paper",
        "description": (
            "The authors' published Net1 (initial guess) and Net2 (refinement, 'diffusion model'), "
            "converted from their MATLAB SeriesNetwork files net1.mat / net2.mat."
        ),
        "net1": {
            "architecture": "encoder_decoder",
            "params": {
                "in_channels": 3,
                "encoder_widths": [16, 32, 64, 128],
                "encoder_kernels": [3, 3, 3, 3],
                "bridge_width": 128,
                "bridge_kernel": 3,
                "decoder_widths": [64, 32, 16, 8],
                "decoder_conv_kernel": 3,
                "batch_norm": True,
                "skip_connections": False,
                "ceiling": 255.0,
                "out_channels": 1,
            },
            "input_scale": 1.0,
            "input_mean": 0.0,
            "output_scale": 255.0,
            "input": "edge stack, 3 channels (Sobel, LoG, Canny), each 0 or 255",
            "output": "boundary map 0..255 (clipped ReLU, ceiling 255)",
        },
        "net2": {
            "architecture": "encoder_decoder",
            "params": {
                "in_channels": 1,
                "encoder_widths": [4, 8, 16, 32],
                "encoder_kernels": [15, 7, 5, 3],
                "bridge_width": None,
                "decoder_widths": [32, 16, 8, 4],
                "decoder_conv_kernel": None,
                "batch_norm": False,
                "skip_connections": False,
                "ceiling": 1.0,
                "out_channels": 1,
            },
            "input_scale": 255.0,
            "input_mean": 27.370562,
            "output_scale": 1.0,
            "input": "boundary map 0..255 minus the 'zerocenter' mean 27.370562",
            "output": "boundary map 0..1 (clipped ReLU, ceiling 1)",
        },
        "preprocessing": {
            "mode": "paper",
            "input_size": [96, 496],
            "upscale_below_rows": 50,
            "percentiles": [1, 99],
            "median_filter": 7,
            "edges": ["sobel", "log", "canny"],
            "edge_thresholds": "MATLAB edge() automatic defaults",
            "threshold": 0.2,
            "closing_disk_radius": 2,
            "convergence": {"rule": "script", "tolerance": 0.003},
        },
        "training": {
            "source": "the authors, as published (arXiv 2504.14782, Methods); not retrained here",
            "framework": "MATLAB Deep Learning Toolbox (SeriesNetwork, regression output)",
            "loss": "mean squared error (regression output layer)",
            "data": "3,000 synthetic 96x496 TEM-like images and their binary targets; Net2 "
                    "trained on Net1's 3,000 initial guesses",
            "split": {"train": 0.85, "validation": 0.075, "test": 0.075},
            "optimizer": "Adam",
            "initial_learning_rate": 0.1,
            "learning_rate_schedule": "x0.5 every 12 epochs",
            "batch_size": 102,
            "selection": "minimum validation error",
            "input_size": [96, 496],
        },
        "data_generator": {
            "name": "the authors' concept-oriented synthetic data (MATLAB)",
            "version": "A-S-Saleh/Concept-Oriented-Synthetic-Data-for-Crystal-Grain-Analysis@97c3add",
        },
        "metrics": {
            "reported_by_authors": {
                "accuracy_eq1_mean": 0.9723,
                "on": "their real TEM images of Cu and Ru lines (paper, Eq. 1)",
            },
        },
        "license": "CC0-1.0",
        "credit": (
            "A. S. Saleh, K. Croes, H. Ceric, I. De Wolf, H. Zahedmanesh, 'Novel Concept-Oriented "
            "Synthetic Data approach for Training Generative AI-Driven Crystal Grain Analysis "
            "Using Diffusion Model', arXiv:2504.14782. Weights from "
            "https://github.com/A-S-Saleh/Concept-Oriented-Synthetic-Data-for-Crystal-Grain-"
            "Analysis (commit 97c3add), CC0 1.0."
        ),
        "files": {},
    }


def list_models() -> list[str]:
    """Names of the models shipped in ``models/`` (folders holding a ``card.json``), sorted."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "card.json").is_file())


def resolve_model_path(name_or_path: str | os.PathLike | None = "default") -> Path:
    """Find the folder of a model given its name or a path.

    ``"default"`` (or None) is ``models/default`` when that exists, else ``models/paper``.
    Another bare name is ``models/<name>``. Anything else is a folder holding ``card.json``.

    Raises
    ------
    GrainsError
        When nothing matches; the message lists the shipped models.
    """
    if name_or_path is None:
        name_or_path = "default"
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise GrainsError(f"a model is named by a string or a folder path, not "
                          f"{type(name_or_path).__name__} {name_or_path!r}; e.g. 'paper'.")
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    bare = bool(text) and not (os.sep in text or "/" in text or text.startswith((".", "~")))
    if bare:
        # a shipped name wins over a same-named folder in the current directory
        name = text
        if name == "default" and not (MODELS_DIR / "default" / "card.json").is_file():
            name = "paper"
        if (MODELS_DIR / name / "card.json").is_file():
            return MODELS_DIR / name
        if not p.is_dir():
            raise GrainsError(
                f"unknown model {text!r}; shipped models: {', '.join(list_models()) or 'none'}. "
                "Give one of these names or the folder of a trained model (it holds card.json)."
            )
    if not p.is_dir():
        raise GrainsError(f"model folder {p} does not exist; give a folder holding card.json.")
    if not (p / "card.json").is_file():
        raise GrainsError(
            f"{p} has no card.json, so it is not a model folder; give the folder that "
            "napari-grains train (or save_model) wrote."
        )
    return p


def _corrupt(path: Path, why: str) -> GrainsError:
    return GrainsError(
        f"model file {path} is corrupt: re-install napari-grains or re-train ({why})."
    )


def build_model(card: dict, *, seed: int = 0, name: str | None = None,
                device: torch.device | str | None = None) -> GrainModel:
    """Build a model with randomly initialised weights from a card (for training).

    Parameters
    ----------
    card : dict
        A model card with ``net1`` and ``net2`` entries (see :func:`paper_card`).
    seed : int
        Seed of the initialisation; the global torch random state is left as it was.
    name : str, optional
        Model name; defaults to ``card["name"]``.
    device : torch.device or str, optional

    Returns
    -------
    GrainModel
    """
    for key in _NETS:
        if not isinstance(card.get(key), dict):
            raise GrainsError(f"model card has no {key!r} entry; fix the card.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net1 = build_net(card["net1"])
        net2 = build_net(card["net2"])
    return GrainModel(name or str(card.get("name", "model")), copy.deepcopy(card), net1, net2,
                      device=device)


def load_model(name_or_path: str | os.PathLike | None = "default",
               device: torch.device | str | None = None) -> GrainModel:
    """Load a model by name (``"paper"``, ``"default"``, ...) or from a folder.

    The sha256 of each weights file is checked against the card before loading, and the nets
    are put in eval mode.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model's name (see :func:`list_models`), ``"default"`` (or None), or a model
        folder.
    device : torch.device or str, optional
        Where to put the nets (default CPU).

    Returns
    -------
    GrainModel

    Raises
    ------
    GrainsError
        Unknown name, missing folder, or a missing or corrupt file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_model_path(name_or_path)
    card_path = folder / "card.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(card_path, f"unreadable card: {exc}") from exc
    if not isinstance(card, dict):
        raise _corrupt(card_path, "the card is not a JSON object")
    try:
        model = build_model(card, name=str(card.get("name", folder.name)))
    except (GrainsError, KeyError, TypeError, ValueError, AttributeError) as exc:
        why = str(exc).rstrip(".")
        raise _corrupt(card_path, f"it does not describe the nets: {why}") from exc
    files = card.get("files", {})
    if not isinstance(files, dict):
        raise _corrupt(card_path, "its 'files' entry is not a JSON object")
    for key in _NETS:
        wpath = folder / f"{key}.safetensors"
        if not wpath.is_file():
            raise _corrupt(wpath, "missing")
        entry = files.get(wpath.name)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if expected is None:
            raise _corrupt(card_path, f"no sha256 recorded for {wpath.name}")
        if sha256_file(wpath) != expected:
            raise _corrupt(wpath, "sha256 does not match the card")
        try:
            state = load_file(str(wpath))
            getattr(model, key).load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise _corrupt(wpath, f"weights do not fit the card's architecture: {exc}") from exc
    model.path = folder
    model.net1.eval()
    model.net2.eval()
    return model.to(device or "cpu")


def save_model(model: GrainModel, folder: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a model folder: ``net1.safetensors``, ``net2.safetensors`` and ``card.json``.

    The card written is ``model.card`` with ``files`` holding the sha256 of each weights file.
    Every file is written atomically; the card last, so a folder with a card is complete.

    Parameters
    ----------
    model : GrainModel
    folder : path-like
        Created if missing.
    overwrite : bool
        When False, refuse to replace an existing model folder's card.

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.torch import save_file

    out = Path(folder)
    if (out / "card.json").exists() and not overwrite:
        raise GrainsError(f"{out} already holds a model; choose another folder or overwrite.")
    out.mkdir(parents=True, exist_ok=True)
    card = copy.deepcopy(model.card)
    card.setdefault("format", CARD_FORMAT)
    card["files"] = {}
    for key in _NETS:
        net = getattr(model, key)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        target = out / f"{key}.safetensors"
        meta = {"net": key}
        atomic_write(target, lambda tmp, s=state, m=meta: save_file(s, str(tmp), metadata=m))
        card["files"][target.name] = {"sha256": sha256_file(target)}
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    atomic_write(out / "card.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    model.card = card
    return out

