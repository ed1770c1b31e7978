"""Train Net1 and Net2 on concept-oriented synthetic pairs (the paper's Methods D).

Training is a generator of typed progress events, so the command line can show it as a progress
bar and the napari face can run it in a background worker::

    >>> from napari_grains.train import TrainConfig, iter_train
    >>> cfg = TrainConfig(n_pairs=8, size=(32, 64), crop=(32, 32), net1_epochs=1, net2_epochs=1)
    >>> for event in iter_train(cfg, "my_model"):  # doctest: +SKIP
    ...     print(event)

Stopping is stopping the iteration (``break`` or ``gen.close()``): the generator saves a resumable
checkpoint and leaves the best model seen so far in ``out_dir``. ``iter_train(..., resume=dir)``
continues from that checkpoint with the same results as an uninterrupted run (every batch draws
its randomness from ``(seed, stage, epoch, batch)``, not from a running random state).

What is trained
---------------
*Net1* maps the 0/255 edge stack to a boundary probability map (random crops of the synthetic
pairs, random flips). *Net2* is applied again and again at inference, so it is trained to be a
**stable refiner**: its inputs are a mix of Net1's outputs, the clean target itself (a correct map
must be a fixed point), targets corrupted at graded severities (gaps, spurious fragments, blobs,
thickening, blur, noise, down to pure noise), and -- for a share of the batches -- the result of
applying Net2 itself 1..k times to any of those (unrolled iterations, so its own outputs are in
its training distribution). The target is always the clean boundary map. The Net2 checkpoint kept
is the one with the lowest validation error measured *after several iterations* (and on the
identity), not after one.

The output folder is a model folder (``net1.safetensors``, ``net2.safetensors``, ``card.json``,
written by :func:`napari_grains.nets.save_model`) that ``napari-grains extract --model DIR`` loads;
``DIR/checkpoint/`` holds the resumable state.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_grains.errors import GrainsError
from napari_grains.io import atomic_write

__all__ = [
    "Checkpoint",
    "DataProgress",
    "Done",
    "Epoch",
    "Step",
    "TrainConfig",
    "TrainEvent",
    "Validation",
    "boundary_loss",
    "corrupt_boundaries",
    "cut_gaps",
    "default_card",
    "gap_weights",
    "iter_train",
    "load_checkpoint_config",
    "resolve_device",
    "soft_cldice_loss",
    "soft_skeleton",
    "tolerant_prf",
    "train",
]

STAGES = ("net1", "net2")
LOSSES = ("mse_dice", "mse", "bce_dice", "bce", "mse_dice_cldice")
_STATE = "state.json"
_CKPT = "checkpoint"


# --------------------------------------------------------------------------------------------
# configuration and events
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the model card).

    Parameters
    ----------
    n_pairs : int
        Number of synthetic pairs, split 85 / 7.5 / 7.5 % into training, validation and test.
    size : (int, int)
        (rows, cols) of each synthetic image; multiples of 16.
    crop : (int, int)
        (rows, cols) of the random training crops; multiples of 16, at most ``size``.
    synth : dict
        Overrides of :class:`napari_grains.synth.SynthParams` fields (after the preset).
    synth_preset : str or None
        ``"realistic"`` (:meth:`SynthParams.realistic`, the default) or ``None`` for the
        paper-faithful defaults.
    grain_size_range : (float, float) or None
        When set, the range from which each pair draws its mean grain diameter in pixels
        (``SynthParams.mean_diameter``); ``None`` leaves the preset's range.
    seed : int
        Seed of the data split, the crops, the corruptions and the weight initialisation.
    data_seed : int
        Pair ``i`` is ``generate_pair(params, seed=data_seed, index=i)``; keep it away from the
        benchmark's seeds.
    card : dict or None
        Architecture card for :func:`napari_grains.nets.build_model`; ``None`` uses the default
        card of ``nets``.
    init : str or None
        Start from the weights of this model (``"paper"``, ``"default"`` or a folder) instead of
        random weights; nets whose architecture matches ``card`` are copied.
    net1_epochs, net2_epochs : int
        Epochs of each stage (0 skips a stage and keeps the initial weights).
    batch_size : int
        Crops per optimiser step.
    lr : float
        Initial Adam learning rate (of both stages unless ``net2_lr`` is set).
    net2_lr : float or None
        Initial learning rate of Net2.
    lr_decay_every : int
        Epochs between learning-rate reductions (step decay).
    lr_decay_factor : float
        Factor applied at each reduction.
    weight_decay : float
        Adam weight decay.
    crops_per_pair : int
        Random crops drawn from each training pair per epoch.
    loss : str
        ``"mse_dice"`` (default), ``"mse"``, ``"bce_dice"``, ``"bce"`` or
        ``"mse_dice_cldice"`` on the boundary probability (see :func:`boundary_loss`).
    pos_weight : float
        Weight of boundary pixels in the MSE / BCE term (boundaries are a small share of
        pixels).
    net2_mix : dict
        Shares of the Net2 input sources: ``net1`` (Net1's output), ``clean`` (the target),
        ``corrupt`` (graded corruptions), ``noise`` (pure noise), ``gaps`` (the target with
        only gaps cut into it, softened like Net1's output; :func:`cut_gaps`) and
        ``net1_gaps`` (Net1's output with extra gaps cut along the true boundaries). The last
        two teach Net2 to close a boundary network rather than only clean it.
    net2_gap_weight : float
        Loss weight of the true boundary pixels that Net2's input misses (see
        :func:`gap_weights`); 1 (the default) treats them like other boundary pixels.
    net2_unroll : int
        Largest number of no-grad Net2 applications before the trained one.
    net2_unroll_prob : float
        Share of Net2 batches that are unrolled.
    net2_val_iterations : tuple of int
        Iteration counts at which Net2's validation F1 is measured; the validation error is the
        mean of ``1 - F1`` over these (from Net1's outputs and from the clean targets).
    net2_val_ari_weight : float
        Weight of grain closure in Net2's validation error: ``W`` times the mean ``1 - ARI``
        (adjusted Rand index of the 4-connected grain labelings, as ``evaluate`` scores them)
        after the ``net2_val_iterations`` iterations from Net1's outputs is added to the F1
        term. Boundary F1 alone cannot tell a Net2 that closes the network from one that
        leaves gaps (grains merge through a gap of one pixel at little cost in F1), so with
        ``0`` the kept checkpoint need not be the one that closes grains. Default 1; runs
        saved before this option existed resume with 0 (their behaviour).
    val_limit : int
        Largest number of validation images used per validation.
    tolerance : int
        Pixel tolerance of the validation precision / recall.
    threshold : float
        Probability above which a pixel counts as boundary in validation (0.2, as
        ``napari_grains.extract``).
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads : int or None
        ``torch.set_num_threads`` for CPU training; ``None`` leaves torch's default.
    data_cache : str or None
        A ``.npz`` file holding the generated pairs (written once, reused when its key matches).
    """

    n_pairs: int = 1000
    size: tuple[int, int] = (96, 496)
    crop: tuple[int, int] = (96, 96)
    synth: dict = field(default_factory=dict)
    synth_preset: str | None = "realistic"
    grain_size_range: tuple[float, float] | None = None
    seed: int = 0
    data_seed: int = 50_000_000
    card: dict | None = None
    init: str | None = None
    net1_epochs: int = 10
    net2_epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    net2_lr: float | None = None
    lr_decay_every: int = 12
    lr_decay_factor: float = 0.5
    weight_decay: float = 0.0
    crops_per_pair: int = 1
    loss: str = "mse_dice"
    pos_weight: float = 3.0
    net2_mix: dict = field(
        default_factory=lambda: {"net1": 0.4, "clean": 0.15, "corrupt": 0.4, "noise": 0.05}
    )
    net2_gap_weight: float = 1.0
    net2_unroll: int = 4
    net2_unroll_prob: float = 0.5
    net2_val_iterations: tuple[int, ...] = (1, 4, 16)
    net2_val_ari_weight: float = 1.0
    val_limit: int = 64
    tolerance: int = 2
    threshold: float = 0.2
    device: str = "auto"
    threads: int | None = None
    data_cache: str | None = None

    def __post_init__(self) -> None:
        self.size = tuple(int(v) for v in self.size)  # type: ignore[assignment]
        self.crop = tuple(int(v) for v in self.crop)  # type: ignore[assignment]
        self.net2_val_iterations = tuple(int(v) for v in self.net2_val_iterations)
        if self.grain_size_range is not None:
            self.grain_size_range = tuple(float(v) for v in self.grain_size_range)  # type: ignore
        self.validate()

    def validate(self) -> None:
        """Raise :class:`GrainsError` when a value cannot work, saying what to change."""
        if self.n_pairs < 4:
            raise GrainsError(f"n_pairs={self.n_pairs}: need at least 4 pairs "
                              "(85/7.5/7.5 % split into training, validation and test).")
        for name in ("size", "crop"):
            v = getattr(self, name)
            if len(v) != 2 or any(s < 16 or s % 16 for s in v):
                raise GrainsError(f"{name}={v}: give (rows, cols), each a multiple of 16 "
                                  "(the nets pool four times).")
        if self.crop[0] > self.size[0] or self.crop[1] > self.size[1]:
            raise GrainsError(f"crop={self.crop} is larger than size={self.size}; "
                              "use a smaller crop or larger images.")
        if self.batch_size < 1 or self.crops_per_pair < 1:
            raise GrainsError("batch_size and crops_per_pair must be at least 1.")
        if self.net1_epochs < 0 or self.net2_epochs < 0:
            raise GrainsError("the number of epochs cannot be negative.")
        if not (self.lr > 0 and (self.net2_lr is None or self.net2_lr > 0)):
            raise GrainsError("learning rates must be positive.")
        if self.lr_decay_every < 1 or not (0 < self.lr_decay_factor <= 1):
            raise GrainsError("lr_decay_every must be >= 1 and lr_decay_factor in (0, 1].")
        if self.loss not in LOSSES:
            raise GrainsError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}.")
        if set(self.net2_mix) - set(NET2_SOURCES) or not any(
            v > 0 for v in self.net2_mix.values()
        ) or any(v < 0 for v in self.net2_mix.values()):
            raise GrainsError(f"net2_mix={self.net2_mix}: give non-negative shares (at least "
                              f"one positive) for {', '.join(map(repr, NET2_SOURCES))}.")
        if not self.net2_gap_weight > 0:
            raise GrainsError(f"net2_gap_weight={self.net2_gap_weight}: give a positive "
                              "weight (1 = off, e.g. 10 to stress gaps).")
        if not self.net2_val_ari_weight >= 0:
            raise GrainsError(f"net2_val_ari_weight={self.net2_val_ari_weight}: give a "
                              "non-negative weight (0 = score boundaries only).")
        if any(k < 1 for k in self.net2_val_iterations) or not self.net2_val_iterations:
            raise GrainsError("net2_val_iterations must be positive iteration counts.")
        if self.grain_size_range is not None and not (
            0 < self.grain_size_range[0] <= self.grain_size_range[1]
        ):
            raise GrainsError("grain_size_range must be (smallest, largest) positive diameters.")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (the inverse of :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        for k in ("size", "crop", "net2_val_iterations", "grain_size_range"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build a config from :meth:`to_dict` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        # saved before grain closure was scored in validation: keep that run's behaviour
        d.setdefault("net2_val_ari_weight", 0.0)
        return cls(**{k: v for k, v in d.items() if k in names})

    def data_key(self) -> dict:
        """The fields that define the generated data (must match to resume or reuse a cache)."""
        return {k: self.to_dict()[k] for k in
                ("n_pairs", "size", "synth", "synth_preset", "grain_size_range", "data_seed")}


@dataclass(frozen=True)
class DataProgress:
    """Generating the synthetic pairs (or Net1's outputs on them): ``done`` of ``total``."""

    what: str
    done: int
    total: int


@dataclass(frozen=True)
class Step:
    """One optimiser step. ``step`` counts steps of this stage, ``batch`` within the epoch."""

    stage: str
    epoch: int
    batch: int
    n_batches: int
    step: int
    loss: float
    lr: float


@dataclass(frozen=True)
class Epoch:
    """An epoch ended: mean training loss, learning rate, seconds it took."""

    stage: str
    epoch: int
    n_epochs: int
    train_loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class Validation:
    """Validation after an epoch. ``error`` is what the best checkpoint minimises.

    ``metrics`` holds the loss and tolerance precision / recall / F1 (for Net2: F1 after each of
    ``net2_val_iterations`` iterations from Net1's output and from the clean target, and with
    ``net2_val_ari_weight`` the ARI of the grain labelings after those iterations from Net1).
    """

    stage: str
    epoch: int
    error: float
    metrics: dict
    best: bool


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint was written: ``path`` is the model folder (best) or the resume state."""

    stage: str
    epoch: int
    step: int
    path: Path
    best: bool


@dataclass(frozen=True)
class Done:
    """Training ended (``stopped`` is False) -- the model folder at ``path`` is final."""

    path: Path
    stopped: bool
    seconds: float
    best_errors: dict
    test_metrics: dict


TrainEvent = DataProgress | Step | Epoch | Validation | Checkpoint | Done


# --------------------------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------------------------


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is checked and returned.

    Raises
    ------
    GrainsError
        When CUDA is asked for and not available, or the name is not a device.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise GrainsError(f"device {spec!r} is not a device name; use auto, cpu or cuda.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GrainsError(f"device {spec!r} asked for but CUDA is not available here; "
                          "use --device cpu or auto.")
    return dev


def tolerant_prf(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 2
                 ) -> tuple[float, float, float]:
    """Boundary precision, recall and F1 with a pixel tolerance (square neighbourhood).

    Parameters
    ----------
    pred, target : torch.Tensor
        Boolean (N, 1, H, W) maps.
    tolerance : int
        A predicted pixel is correct when a true boundary pixel lies within this many pixels
        (and vice versa for recall).

    Returns
    -------
    (precision, recall, f1) : tuple of float
        Summed over the batch. Empty maps count as perfect precision / recall.
    """
    p = pred.float()
    t = target.float()
    k = 2 * tolerance + 1
    dil_t = F.max_pool2d(t, k, stride=1, padding=tolerance) if tolerance else t
    dil_p = F.max_pool2d(p, k, stride=1, padding=tolerance) if tolerance else p
    n_p, n_t = float(p.sum()), float(t.sum())
    prec = float((p * dil_t).sum()) / n_p if n_p else 1.0
    rec = float((t * dil_p).sum()) / n_t if n_t else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def boundary_loss(prob: torch.Tensor, target: torch.Tensor, kind: str = "mse_dice",
                  pos_weight: float = 3.0, weight: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Loss between a boundary probability map and the binary target.

    Parameters
    ----------
    prob : torch.Tensor
        (N, 1, H, W) values in [0, 1] (what ``GrainModel.initial_guess`` / ``refine`` return).
    target : torch.Tensor
        (N, 1, H, W) float 0/1.
    kind : str
        ``"mse"``: squared error with boundary pixels weighted by ``pos_weight`` (the paper's
        regression loss, plus the weight); ``"bce"``: binary cross-entropy, same weighting;
        ``"mse_dice"`` / ``"bce_dice"``: that plus the soft Dice loss of the boundary class
        (insensitive to how many pixels are boundary). The MSE forms have bounded gradients,
        which suits the clipped-ReLU heads of the paper's architecture.
        ``"mse_dice_cldice"``: ``"mse_dice"`` plus the centre-line Dice loss
        (:func:`soft_cldice_loss`), which charges a break in a boundary line by its length
        along the line's centre, however thin the line, rather than by its few pixels.
    pos_weight : float
        Weight of boundary pixels in the pixel-wise term.
    weight : torch.Tensor, optional
        (N, 1, H, W) extra per-pixel weights of the pixel-wise term, multiplied with the
        ``pos_weight`` weighting (e.g. :func:`gap_weights`).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    if kind not in LOSSES:
        raise GrainsError(f"loss={kind!r}: choose one of {', '.join(LOSSES)}.")
    w = 1.0 + (pos_weight - 1.0) * target
    if weight is not None:
        w = w * weight
    if kind.startswith("mse"):
        pix = (w * (prob - target) ** 2).sum() / w.sum()
    else:
        pix = F.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), target, weight=w)
    if "_dice" not in kind:
        return pix
    inter = (prob * target).sum(dim=(1, 2, 3))
    denom = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1.0 - (2 * inter + 1.0) / (denom + 1.0)
    loss = pix + dice.mean()
    if kind.endswith("_cldice"):
        loss = loss + soft_cldice_loss(prob, target)
    return loss


def _soft_erode(x: torch.Tensor) -> torch.Tensor:
    # minimum over the 4-neighbourhood cross (a min-pool along rows, then along columns)
    return torch.minimum(-F.max_pool2d(-x, (3, 1), 1, (1, 0)),
                         -F.max_pool2d(-x, (1, 3), 1, (0, 1)))


def _soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 1, 1)


def soft_skeleton(x: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Differentiable skeleton of a map in [0, 1], ``(N, 1, H, W)``.

    Morphological skeleton by iterated erosions, each step keeping what an opening removes
    (Shit et al. 2021, "clDice", CVPR): min- and max-pooling stand in for erosion and
    dilation, so gradients reach the pixels that carry the line's centre.
    """
    skel = F.relu(x - _soft_dilate(_soft_erode(x)))
    for _ in range(iterations):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_dilate(_soft_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def soft_cldice_loss(prob: torch.Tensor, target: torch.Tensor, iterations: int = 5,
                     eps: float = 1.0) -> torch.Tensor:
    """Centre-line Dice loss, ``1 - 2 Tprec Tsens / (Tprec + Tsens)`` per image, averaged.

    ``Tprec`` is the share of the predicted skeleton lying on true boundary and ``Tsens`` the
    share of the true skeleton covered by the prediction. A gap of a few pixels that severs a
    boundary leaves its skeleton uncovered along the gap only, but unlike a pixel loss the
    term does not fade as the line gets thinner, and spurious fragments lower ``Tprec`` by
    their skeleton length.
    """
    sp = soft_skeleton(prob, iterations)
    st = soft_skeleton(target, iterations)
    dims = (1, 2, 3)
    tprec = ((sp * target).sum(dims) + eps) / (sp.sum(dims) + eps)
    tsens = ((st * prob).sum(dims) + eps) / (st.sum(dims) + eps)
    return (1.0 - 2.0 * tprec * tsens / (tprec + tsens)).mean()


def gap_weights(net2_input: torch.Tensor, target: torch.Tensor, gap_weight: float,
                threshold: float = 0.2) -> torch.Tensor:
    """Per-pixel loss weights that stress the gaps Net2 must close.

    Parameters
    ----------
    net2_input : torch.Tensor
        (N, 1, H, W) the map Net2 is given.
    target : torch.Tensor
        (N, 1, H, W) float 0/1 true boundary map.
    gap_weight : float
        Weight of a *gap pixel*: a true boundary pixel with no input pixel above ``threshold``
        within 1 px (3×3 neighbourhood). All other pixels get weight 1. Missing such a pixel
        leaves a hole through which two grains merge, which costs grain statistics far more
        than its share of boundary length suggests.
    threshold : float
        Probability above which an input pixel counts as boundary.

    Returns
    -------
    torch.Tensor
        (N, 1, H, W) float weights, 1 or ``gap_weight``.
    """
    if gap_weight <= 0:
        raise GrainsError(f"gap_weight={gap_weight}: give a positive weight (1 = off).")
    seen = F.max_pool2d(net2_input.float(), 3, stride=1, padding=1) > threshold
    gap = (target > 0.5) & ~seen
    return 1.0 + (float(gap_weight) - 1.0) * gap.float()


class _RawHead:
    """Straight-through gradients for clipped-ReLU heads.

    The paper's nets end in ``clamp(head(x), 0, ceiling)``: a pixel whose pre-activation is
    negative gets no gradient, even when it should be boundary. During training we keep the
    clamped value in the forward pass but let the gradient flow as if unclamped
    (``p + u - u.detach()``, ``u`` the unclamped output on the same scale).
    """

    def __init__(self, net: torch.nn.Module, output_scale: float):
        self.z: torch.Tensor | None = None
        self.scale = float(output_scale)
        head = getattr(net, "head", None)
        self.handle = head.register_forward_hook(self._hook) if head is not None else None

    def _hook(self, module, inputs, output) -> None:
        self.z = output

    def apply(self, prob: torch.Tensor) -> torch.Tensor:
        z, self.z = self.z, None
        if z is None or z.shape != prob.shape:
            return prob
        u = z / self.scale
        return prob + (u - u.detach())

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()


def _step_lr(lr0: float, epoch: int, every: int, factor: float) -> float:
    return lr0 * factor ** (epoch // every)


NET2_SOURCES = ("net1", "clean", "corrupt", "noise", "gaps", "net1_gaps")


def _rng(cfg: TrainConfig, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), *[int(k) for k in keys]])


# --------------------------------------------------------------------------------------------
# corruptions for Net2
# --------------------------------------------------------------------------------------------


def cut_gaps(x: np.ndarray, boundary: np.ndarray, severity: float, rng: np.random.Generator
             ) -> np.ndarray:
    """Erase discs centred on boundary pixels: gaps that break a boundary network open.

    Parameters
    ----------
    x : numpy.ndarray
        (H, W) map to cut (a boundary probability map, e.g. Net1's output or the target).
    boundary : numpy.ndarray
        (H, W) bool true boundary map; the gaps are centred on its pixels, so they cut real
        boundaries (where a missed boundary merges two grains).
    severity : float
        In [0, 1]; the number of gaps grows linearly with it (about one per 60 boundary pixels
        at 1) and their radius (2…2 + 8·severity px).
    rng : numpy.random.Generator
        Source of all randomness.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 copy of ``x`` with the gaps set to 0.
    """
    import cv2

    s = float(np.clip(severity, 0.0, 1.0))
    out = np.array(x, dtype=np.float32, copy=True)
    ys, xs = np.nonzero(np.asarray(boundary).astype(bool))
    n = rng.poisson(s * len(ys) / 60.0) if len(ys) else 0
    if n:
        idx = rng.integers(0, len(ys), n)
        radii = rng.integers(2, 3 + round(8 * s), n)
        for i, r in zip(idx, radii):
            cv2.circle(out, (int(xs[i]), int(ys[i])), int(r), 0.0, -1)
    return out


def _gapped_target(target: np.ndarray, severity: float, rng: np.random.Generator
                   ) -> np.ndarray:
    """The target with only gaps cut, blurred and dimmed a little like Net1's output."""
    from scipy import ndimage as ndi

    t = np.asarray(target).astype(bool)
    x = cut_gaps(t.astype(np.float32), t, severity, rng)
    if rng.random() < 0.7:
        x = ndi.gaussian_filter(x, rng.uniform(0.3, 1.0))
        x = x / max(float(x.max()), 1e-6)
    x *= rng.uniform(0.6, 1.0)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def corrupt_boundaries(target: np.ndarray, severity: float, rng: np.random.Generator
                       ) -> np.ndarray:
    """A damaged version of a boundary map, for training Net2 to repair it.

    Parameters
    ----------
    target : numpy.ndarray
        (H, W) bool or 0/1 boundary map.
    severity : float
        0 returns the map unchanged (as float); 1 returns pure noise. In between, the damage
        grows smoothly: gaps cut into boundaries, spurious line fragments and blobs, local
        thickening, blur, dimming, salt-and-pepper and Gaussian noise, and a blend towards a
        noise field that takes over near 1.
    rng : numpy.random.Generator
        Source of all randomness.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 in [0, 1].
    """
    import cv2
    from scipy import ndimage as ndi

    s = float(np.clip(severity, 0.0, 1.0))
    t = np.asarray(target).astype(bool)
    h, w = t.shape
    x = t.astype(np.float32)
    if s == 0.0:
        return x
    area = h * w
    # gaps: erase discs centred on boundary pixels
    ys, xs = np.nonzero(t)
    n_gaps = rng.poisson(s * area / 350.0)
    if len(ys) and n_gaps:
        idx = rng.integers(0, len(ys), n_gaps)
        radii = rng.integers(1, 2 + round(6 * s), n_gaps)
        for i, r in zip(idx, radii):
            cv2.circle(x, (int(xs[i]), int(ys[i])), int(r), 0.0, -1)
    # spurious fragments: short straight or bent lines
    n_frag = rng.poisson(s * area / 500.0)
    for _ in range(n_frag):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        pts = [(x0, y0)]
        ang = rng.uniform(0, 2 * np.pi)
        for _k in range(rng.integers(1, 4)):
            ln = rng.uniform(3, 6 + 25 * s)
            ang += rng.normal(0, 0.6)
            pts.append((pts[-1][0] + ln * np.cos(ang), pts[-1][1] + ln * np.sin(ang)))
        val = float(rng.uniform(0.4, 1.0))
        thick = int(rng.integers(1, 3))
        for a, b in itertools.pairwise(pts):
            cv2.line(x, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), val, thick)
    # blobs
    n_blob = rng.poisson(s * area / 2500.0)
    for _ in range(n_blob):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.integers(1, 2 + int(5 * s))), int(rng.integers(1, 2 + int(5 * s))))
        cv2.ellipse(x, c, axes, float(rng.uniform(0, 180)), 0, 360,
                    float(rng.uniform(0.4, 1.0)), -1)
    # local thickening
    if rng.random() < 0.4 * s:
        thick = ndi.grey_dilation(x, size=(3, 3))
        mask = ndi.gaussian_filter(rng.random((h, w)).astype(np.float32), 6) > 0.5
        x = np.where(mask, thick, x)
    # blur (Net1-like soft boundaries) and dimming
    if rng.random() < 0.5:
        x = ndi.gaussian_filter(x, rng.uniform(0.3, 0.5 + 1.0 * s))
        x = x / max(float(x.max()), 1e-6)
    x *= rng.uniform(1.0 - 0.5 * s, 1.0)
    # pixel noise
    if rng.random() < 0.7:
        x = x + rng.normal(0.0, 0.25 * s, x.shape).astype(np.float32)
    sp = rng.random(x.shape) < 0.08 * s * rng.random()
    x[sp] = rng.integers(0, 2, int(sp.sum())).astype(np.float32)
    # blend towards a noise field; pure noise at severity 1
    a = s ** 4
    if a > 0:
        if rng.random() < 0.5:
            noise = rng.random((h, w)).astype(np.float32)
        else:
            noise = ndi.gaussian_filter(rng.random((h, w)).astype(np.float32),
                                        rng.uniform(0.5, 2.0))
            noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
        x = (1.0 - a) * x + a * noise
    return np.clip(x, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@dataclass
class _Data:
    edges: torch.Tensor  # (N, 3, H, W) uint8 0/255
    target: torch.Tensor  # (N, 1, H, W) uint8 0/1
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    params: dict  # data parameters for the card
    net1_out: torch.Tensor | None = None  # (N, 1, H, W) float16, Net1's output


def _synth_params(cfg: TrainConfig):
    from napari_grains import synth

    over = dict(cfg.synth)
    over.setdefault("height", cfg.size[0])
    over.setdefault("width", cfg.size[1])
    if cfg.grain_size_range is not None:
        over["mean_diameter"] = tuple(cfg.grain_size_range)
    if "realism" in over and isinstance(over["realism"], dict):
        base = synth.SynthParams.realistic() if cfg.synth_preset == "realistic" else \
            synth.SynthParams()
        over["realism"] = {**dataclasses.asdict(base.realism), **over["realism"]}
    try:
        if cfg.synth_preset == "realistic":
            params = synth.SynthParams.from_dict({**synth.SynthParams.realistic().to_dict(),
                                                  **over})
        elif cfg.synth_preset in (None, "", "paper"):
            params = synth.SynthParams.from_dict({**synth.SynthParams().to_dict(), **over})
        else:
            raise GrainsError(f"synth_preset={cfg.synth_preset!r}: use 'realistic' or None.")
    except TypeError as exc:
        raise GrainsError(f"bad synthetic-data parameters {over}: {exc}") from exc
    return params.validate()


def _iter_make_data(cfg: TrainConfig) -> Iterator[DataProgress | _Data]:
    """Generate the pairs and their edge stacks (yields progress, then the data)."""
    from napari_grains import extract, synth

    params = _synth_params(cfg)
    key = json.dumps(cfg.data_key(), sort_keys=True)
    n = cfg.n_pairs
    h, w = cfg.size
    ed = ta = None
    if cfg.data_cache and Path(cfg.data_cache).exists():
        with np.load(cfg.data_cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                ed, ta = z["edges"], z["target"]
    if ed is None:
        ed = np.zeros((n, 3, h, w), np.uint8)
        ta = np.zeros((n, 1, h, w), np.uint8)
        xparams = extract.ExtractParams(mode="native", scale=1.0)
        for i in range(n):
            pair = synth.generate_pair(params, seed=cfg.data_seed, index=i)
            img = np.asarray(pair.image, np.float32)
            if img.shape != (h, w):
                raise GrainsError(f"synthetic image shape {img.shape} != size {cfg.size}; "
                                  "set the SynthParams size fields through `synth`.")
            # the edge stack exactly as the pipeline makes it (contrast stretch, median filter)
            pre = extract.preprocess(img, xparams, scale=1.0)
            ed[i] = np.moveaxis(np.asarray(extract.compute_edges(pre, xparams).rgb), -1, 0)
            ta[i, 0] = np.asarray(pair.target, bool)
            if (i + 1) % 10 == 0 or i + 1 == n:
                yield DataProgress("synthetic pairs", i + 1, n)
        if cfg.data_cache:
            def _w(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    np.savez(fh, key=np.array(key), edges=ed, target=ta)
            atomic_write(cfg.data_cache, _w)
    perm = np.random.default_rng([cfg.seed, 12345]).permutation(n)
    n_val = max(1, round(0.075 * n))
    n_test = max(1, round(0.075 * n))
    val, test, train_ = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    params_json = params.to_dict()
    from napari_grains.extract import mean_intercept

    icpt = [mean_intercept(ta[i, 0] > 0) for i in np.sort(train_)]
    icpt = [v for v in icpt if math.isfinite(v)]
    info = {"generator": "napari_grains.synth",
            "generator_version": getattr(synth, "GENERATOR_VERSION", None),
            "preset": cfg.synth_preset, "params": params_json,
            "grain_size_range": cfg.grain_size_range, "n_pairs": n,
            "split": {"train": len(train_), "val": len(val), "test": len(test)},
            "seed": cfg.data_seed, "indices": [0, n - 1],
            "mean_intercept_px": float(np.median(icpt)) if icpt else None}
    yield _Data(torch.from_numpy(ed), torch.from_numpy(ta), np.sort(train_), np.sort(val),
                np.sort(test), info)


def _crop_batch(cfg: TrainConfig, idx: np.ndarray, rng: np.random.Generator,
                *arrays: torch.Tensor) -> list[torch.Tensor]:
    """The same random crop + flip of each index from each (N, C, H, W) array."""
    h, w = cfg.size
    ch, cw = cfg.crop
    outs: list[list[torch.Tensor]] = [[] for _ in arrays]
    for i in idx:
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        fy, fx = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        tr = ch == cw and bool(rng.random() < 0.5)
        for k, a in enumerate(arrays):
            c = a[i, :, y:y + ch, x:x + cw]
            if fy:
                c = c.flip(-2)
            if fx:
                c = c.flip(-1)
            if tr:
                c = c.transpose(-1, -2)
            outs[k].append(c)
    return [torch.stack(o).contiguous() for o in outs]


# --------------------------------------------------------------------------------------------
# model handling and checkpoints
# --------------------------------------------------------------------------------------------


def default_card(net2: str = "unet") -> dict:
    """The project's training card: the paper's Net1 layout and a Net2 variant.

    Parameters
    ----------
    net2 : str
        ``"unet"`` (default): an encoder-decoder with U-Net skip connections, the paper
        Net2's encoder widths (4-8-16-32), 5x5 then 3x3 kernels, a bridge, a 3x3 conv after
        each up-sampling, batch norm, input and output in [0, 1]; about the paper Net2's cost
        per pixel. The skips let it keep a correct map as it is (a fixed point) while the deep
        path fills gaps. Batch norm is there because without it this narrow net collapsed to
        a constant map within an epoch (dead ReLUs; measured, see docs/training.md); at
        inference it is folded into the convs. ``"paper"``: the authors' Net2 layout and scaling.

    Returns
    -------
    dict
        A card for :func:`napari_grains.nets.build_model`.
    """
    from napari_grains import nets

    card = nets.paper_card()
    card["name"] = "trained"
    card["description"] = "Net1 and Net2 trained by napari_grains.train on synthetic pairs."
    for key in ("training", "data_generator", "license", "credit"):
        card.pop(key, None)
    card["metrics"] = {}
    # trained here: edges scaled to 0..1 in, probabilities out (the paper's Net1 regressed
    # 0..255, which scales its gradients down 255-fold); ``init="paper"`` restores the paper's
    # scaling together with its weights
    card["net1"]["params"]["ceiling"] = 1.0
    card["net1"].update(input_scale=1.0 / 255.0, input_mean=0.0, output_scale=1.0,
                        output="boundary probability 0..1 (clipped ReLU, ceiling 1)",
                        input="edge stack, 3 channels (Sobel, LoG, Canny), each 0 or 255, "
                              "scaled to 0..1")
    if net2 == "unet":
        card["net2"] = {
            "architecture": "encoder_decoder",
            "params": {
                "in_channels": 1,
                "encoder_widths": [4, 8, 16, 32],
                "encoder_kernels": [5, 3, 3, 3],
                "bridge_width": 32,
                "bridge_kernel": 3,
                "decoder_widths": [32, 16, 8, 8],
                "decoder_conv_kernel": 3,
                "batch_norm": True,
                "skip_connections": True,
                "ceiling": 1.0,
                "out_channels": 1,
            },
            "input_scale": 1.0,
            "input_mean": 0.0,
            "output_scale": 1.0,
            "input": "boundary map in [0, 1]",
            "output": "boundary map in [0, 1] (clipped ReLU, ceiling 1)",
        }
    elif net2 != "paper":
        raise GrainsError(f"net2={net2!r}: choose 'unet' or 'paper'.")
    return card


def _build(cfg: TrainConfig, device: torch.device):
    from napari_grains import nets

    card = json.loads(json.dumps(cfg.card)) if cfg.card is not None else default_card()
    init_states: dict[str, dict] = {}
    if cfg.init:
        src = nets.load_model(cfg.init, device="cpu")
        probe = nets.build_model(card, seed=cfg.seed)
        for name in STAGES:
            dst_sd = getattr(probe, name).state_dict()
            src_sd = getattr(src, name).state_dict()
            if dst_sd.keys() == src_sd.keys() and all(
                dst_sd[k].shape == src_sd[k].shape for k in dst_sd
            ):
                # same layers: take the source's whole entry (ceiling, scaling) with its weights
                card[name] = json.loads(json.dumps(src.card[name]))
                init_states[name] = src_sd
            elif getattr(cfg, f"{name}_epochs") == 0:
                # not trained here: keep the start model's net as it is, architecture and all
                # (the card's layout differs, e.g. a U-Net Net1 under the default paper layout)
                card[name] = json.loads(json.dumps(src.card[name]))
                init_states[name] = src_sd
            else:
                warnings.warn(
                    f"init {cfg.init}: its {name} does not fit the card's layout, so {name} "
                    "starts from random weights; to fine-tune it, give the card of that model "
                    "(--card DIR/card.json).", stacklevel=2)
        if cfg.net1_epochs == 0 and "net1" in init_states and "inference" in src.card:
            # Net1 kept as it is: keep what was measured for it at inference (its scale aim)
            card["inference"] = json.loads(json.dumps(src.card["inference"]))
        src_icpt = (src.card.get("training") or {}).get("mean_intercept_px")
        card["init"] = {"model": str(cfg.init), "nets": sorted(init_states),
                        "mean_intercept_px": src_icpt}
    model = nets.build_model(card, seed=cfg.seed)
    for name, sd in init_states.items():
        getattr(model, name).load_state_dict(sd)
    return model.to(device)


def _save_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(sd, str(tmp)))


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"CPU {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible")


# --------------------------------------------------------------------------------------------
# the training generator
# --------------------------------------------------------------------------------------------


class _Run:
    """State of one training run (kept out of module globals)."""

    def __init__(self, cfg: TrainConfig, out: Path, device: torch.device):
        self.cfg = cfg
        self.out = out
        self.ckpt = out / _CKPT
        self.device = device
        self.state: dict[str, Any] = {
            "stage": "net1", "epoch": 0, "batch": 0, "step": {"net1": 0, "net2": 0},
            "best": {"net1": None, "net2": None}, "history": [], "seconds": 0.0,
            "done": False,
        }
        self.model = None
        self.opt: torch.optim.Optimizer | None = None
        self.data: _Data | None = None
        self.t0 = time.perf_counter()
        self.seconds0 = 0.0

    # ---- persistence
    def elapsed(self) -> float:
        return self.seconds0 + time.perf_counter() - self.t0

    def save_state(self) -> Path:
        self.ckpt.mkdir(parents=True, exist_ok=True)
        self.state["seconds"] = self.elapsed()
        self.state["config"] = self.cfg.to_dict()
        for name in STAGES:
            _save_weights(getattr(self.model, name), self.ckpt / f"last_{name}.safetensors")
        if self.opt is not None:
            opt_sd = self.opt.state_dict()
            atomic_write(self.ckpt / "optimizer.pt", lambda tmp: torch.save(opt_sd, tmp))
        text = json.dumps(self.state, indent=1, default=float)
        atomic_write(self.ckpt / _STATE, lambda tmp: tmp.write_text(text))
        return self.ckpt

    def save_model(self, status: str) -> Path:
        from napari_grains import nets

        card = self.model.card
        card["training"] = {
            "config": self.cfg.to_dict(),
            "data": self.data.params if self.data is not None else None,
            "status": status,
            "wall_seconds": round(self.elapsed(), 1),
            "hardware": _hardware(self.device),
            "device": str(self.device),
            "torch": torch.__version__,
            # read by extract.estimate_scale: the grain size (mean intercept, px) the nets
            # were trained at
            "mean_intercept_px": self._intercept(),
            "best_validation_error": dict(self.state["best"]),
            "steps": dict(self.state["step"]),
            "history": self.state["history"][-200:],
        }
        if "test" in self.state:
            card["training"]["test"] = self.state["test"]
        nets.save_model(self.model, self.out)
        return self.out

    def _intercept(self) -> float | None:
        """The grain size (mean intercept, px) Net1 works at, for extract's automatic scale.

        A Net1 taken over unchanged from another model (``init``, no Net1 epochs) keeps that
        model's value (None: extract's default for the paper's nets); a trained Net1 gets the
        median intercept of its training targets.
        """
        init = self.model.card.get("init") or {}
        if self.cfg.net1_epochs == 0 and "net1" in init.get("nets", []):
            return init.get("mean_intercept_px")
        return self.data.params.get("mean_intercept_px") if self.data is not None else None

    def best_path(self, name: str) -> Path:
        return self.ckpt / f"best_{name}.safetensors"

    # ---- optimisation
    def make_opt(self, stage: str) -> None:
        net = getattr(self.model, stage)
        lr = self.cfg.lr if stage == "net1" or self.cfg.net2_lr is None else self.cfg.net2_lr
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=self.cfg.weight_decay)
        self.lr0 = lr

    def set_lr(self, epoch: int) -> float:
        lr = _step_lr(self.lr0, epoch, self.cfg.lr_decay_every, self.cfg.lr_decay_factor)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr


def _edges_in(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float32)


def _net1_batch(run: _Run, idx: np.ndarray, rng: np.random.Generator):
    e, t = _crop_batch(run.cfg, idx, rng, run.data.edges, run.data.target)
    return _edges_in(e, run.device), t.to(run.device, torch.float32)


def _net2_batch(run: _Run, idx: np.ndarray, rng: np.random.Generator):
    cfg = run.cfg
    n1, t = _crop_batch(cfg, idx, rng, run.data.net1_out, run.data.target)
    tnp = t.numpy()
    kinds = list(cfg.net2_mix)
    shares = np.array([cfg.net2_mix[k] for k in kinds], float)
    shares = shares / shares.sum()
    xs = []
    for j in range(len(idx)):
        kind = kinds[int(rng.choice(len(kinds), p=shares))]
        if kind == "net1":
            xs.append(n1[j, 0].float().numpy())
        elif kind == "net1_gaps":
            xs.append(cut_gaps(n1[j, 0].float().numpy(), tnp[j, 0] > 0.5,
                               float(rng.uniform(0.2, 1.0)), rng))
        elif kind == "gaps":
            xs.append(_gapped_target(tnp[j, 0], float(rng.uniform(0.2, 1.0)), rng))
        elif kind == "clean":
            xs.append(tnp[j, 0].astype(np.float32))
        elif kind == "corrupt":
            xs.append(corrupt_boundaries(tnp[j, 0], float(rng.uniform(0.05, 0.95)), rng))
        else:
            xs.append(corrupt_boundaries(tnp[j, 0], 1.0, rng))
    x = torch.from_numpy(np.stack(xs)[:, None]).to(run.device)
    tt = t.to(run.device, torch.float32)
    # a conditioned Net2 also sees the pair's Net1 map, whatever the source of the state
    cond = n1.to(run.device, torch.float32)
    if cfg.net2_unroll > 0 and rng.random() < cfg.net2_unroll_prob:
        k = int(rng.integers(1, cfg.net2_unroll + 1))
        was = run.model.net2.training
        run.model.net2.eval()
        with torch.no_grad():
            for _ in range(k):
                x = run.model.refine(run.model.net2_input(x, cond), grad=True)
        run.model.net2.train(was)
    return run.model.net2_input(x, cond).detach(), tt


@torch.no_grad()
def _net1_outputs(run: _Run, idx: np.ndarray, bs: int = 8) -> torch.Tensor:
    run.model.net1.eval()
    outs = []
    for s in range(0, len(idx), bs):
        e = _edges_in(run.data.edges[idx[s:s + bs]], run.device)
        outs.append(run.model.initial_guess(e).float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _validate_net1(run: _Run) -> tuple[float, dict]:
    cfg = run.cfg
    vidx = run.data.val[: cfg.val_limit]
    p = _net1_outputs(run, vidx)
    t = run.data.target[vidx].float()
    loss = float(boundary_loss(p, t, cfg.loss, cfg.pos_weight))
    pr, rc, f1 = tolerant_prf(p > cfg.threshold, t > 0.5, cfg.tolerance)
    return loss, {"loss": loss, "precision": pr, "recall": rc, "f1": f1}


@torch.no_grad()
def _iterate_net2(run: _Run, x: torch.Tensor, its: tuple[int, ...], cond: torch.Tensor,
                  bs: int = 8) -> dict[int, torch.Tensor]:
    """Net2's thresholded maps after each of ``its`` iterations from ``x`` (bool, on the CPU);
    ``cond`` is Net1's map of each image (seen by a conditioned Net2)."""
    cfg = run.cfg
    run.model.net2.eval()
    want = sorted(set(its))
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in want}
    for s in range(0, len(x), bs):
        cur = x[s:s + bs].to(run.device, torch.float32)
        c = cond[s:s + bs].to(run.device, torch.float32)
        for k in range(1, want[-1] + 1):
            cur = run.model.refine(run.model.net2_input(cur, c))
            if k in preds:
                preds[k].append((cur > cfg.threshold).cpu())
    return {k: torch.cat(v) for k, v in preds.items()}


def mean_ari(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean adjusted Rand index of the grain labelings of boolean maps ``(N, 1, H, W)``.

    Grains are labelled as ``napari-grains evaluate`` labels them
    (:func:`napari_grains.evaluate.grain_labels`: 4-connected, gaps of up to 3 px in the
    prediction closed as ``measure`` closes them, boundaries given to the nearest grain), so
    a gap that merges two grains costs here what it costs there.
    """
    from napari_grains.evaluate import adjusted_rand_index, grain_labels

    p = pred.numpy().astype(bool)
    t = target.numpy().astype(bool)
    return float(np.mean([adjusted_rand_index(grain_labels(a[0], close_gaps=3),
                                              grain_labels(b[0]))
                          for a, b in zip(p, t, strict=True)]))


def _validate_net2(run: _Run, split: str = "val") -> tuple[float, dict]:
    cfg = run.cfg
    vidx = getattr(run.data, split)[: cfg.val_limit]
    t = run.data.target[vidx].float()
    x1 = run.data.net1_out[vidx].float()
    its = cfg.net2_val_iterations
    truth = t > 0.5
    p_n1 = _iterate_net2(run, x1, its, x1)
    f_n1 = {k: tolerant_prf(v, truth, cfg.tolerance)[2] for k, v in p_n1.items()}
    f_id = {k: tolerant_prf(v, truth, cfg.tolerance)[2]
            for k, v in _iterate_net2(run, t.clone(), its, x1).items()}
    f0 = tolerant_prf(x1 > cfg.threshold, truth, cfg.tolerance)[2]
    err = float(np.mean([1 - v for v in f_n1.values()] + [1 - v for v in f_id.values()]))
    metrics = {"net1_f1": f0,
               **{f"f1_it{k}": v for k, v in f_n1.items()},
               **{f"identity_f1_it{k}": v for k, v in f_id.items()}}
    if cfg.net2_val_ari_weight > 0:
        ari = {k: mean_ari(v, truth) for k, v in p_n1.items()}
        metrics.update({f"ari_it{k}": v for k, v in ari.items()})
        err += cfg.net2_val_ari_weight * float(np.mean([1 - v for v in ari.values()]))
    return err, metrics


def iter_train(config: TrainConfig | None, out_dir: str | os.PathLike,
               resume: str | os.PathLike | None = None) -> Iterator[TrainEvent]:
    """Train Net1 then Net2, yielding progress events; the model folder is ``out_dir``.

    Parameters
    ----------
    config : TrainConfig or None
        The run's configuration. With ``resume`` it may be ``None`` (use the saved one) or a
        config whose data fields (:meth:`TrainConfig.data_key`) match the saved one -- e.g. to
        train for more epochs.
    out_dir : path
        Folder that receives the model (``net1.safetensors``, ``net2.safetensors``,
        ``card.json``) and ``checkpoint/``. Created if missing.
    resume : path or None
        A previous ``out_dir`` (or its ``checkpoint`` folder) to continue from.

    Yields
    ------
    DataProgress, Step, Epoch, Validation, Checkpoint, Done
        ``Done`` comes last when training ran to the end. Closing the generator early (stop
        iterating) saves a resumable checkpoint and keeps the best model in ``out_dir``.

    Raises
    ------
    GrainsError
        Bad configuration, an unusable device, a resume folder without a checkpoint, or an
        ``out_dir`` holding another run's checkpoint.
    """
    out = Path(out_dir)
    saved: dict | None = None
    rdir: Path | None = None
    if resume is not None:
        rdir = Path(resume)
        if (rdir / _CKPT / _STATE).exists():
            rdir = rdir / _CKPT
        if not (rdir / _STATE).exists():
            raise GrainsError(f"{resume} holds no training checkpoint ({_CKPT}/{_STATE}); "
                              "give the --out folder of an earlier `napari-grains train`.")
        saved = json.loads((rdir / _STATE).read_text())
        saved_cfg = TrainConfig.from_dict(saved["config"])
        if config is None:
            config = saved_cfg
        elif config.data_key() != saved_cfg.data_key():
            raise GrainsError("the data settings differ from the checkpoint's "
                              f"({saved_cfg.data_key()}); resume with the same data settings.")
    if config is None:
        raise GrainsError("give a TrainConfig (or resume from a checkpoint).")
    old_ckpt = out / _CKPT
    if old_ckpt.is_dir() and any(old_ckpt.iterdir()) and (
            rdir is None or rdir.resolve() != old_ckpt.resolve()):
        # an earlier run's best weights there would be taken for this run's (and its
        # checkpoint overwritten): never mix two runs in one folder
        if (old_ckpt / _STATE).exists():
            raise GrainsError(f"{out} holds the checkpoint of an earlier training; continue "
                              f"it with --resume {out}, or choose another --out folder.")
        raise GrainsError(f"{old_ckpt} holds files of an earlier training that stopped before "
                          "its first checkpoint; delete that folder or choose another --out.")
    config.validate()
    device = resolve_device(config.device)
    if config.threads and device.type == "cpu":
        torch.set_num_threads(int(config.threads))
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(config, out, device)
    run.model = _build(config, device)
    if saved is not None:
        run.state.update({k: v for k, v in saved.items() if k != "config"})
        run.seconds0 = float(saved.get("seconds", 0.0))
        if run.state["stage"] == "done":
            done_ep = run.state.get("epochs_done", {})
            if config.net1_epochs > done_ep.get("net1", 0):
                raise GrainsError("this training has finished; more Net1 epochs would retrain "
                                  "Net2 from scratch -- start a new run with --init DIR instead.")
            if config.net2_epochs > done_ep.get("net2", 0):
                run.state.update(stage="net2", epoch=done_ep.get("net2", 0), batch=0)
        for name in STAGES:
            _load_weights(getattr(run.model, name), rdir / f"last_{name}.safetensors")
            bp = rdir / f"best_{name}.safetensors"
            if bp.exists() and rdir.resolve() != run.ckpt.resolve():
                run.ckpt.mkdir(parents=True, exist_ok=True)
                _load_weights(getattr(run.model, name), bp)
                _save_weights(getattr(run.model, name), run.best_path(name))
                _load_weights(getattr(run.model, name), rdir / f"last_{name}.safetensors")
    finished = False
    try:
        for ev in _iter_make_data(config):
            if isinstance(ev, _Data):
                run.data = ev
            else:
                yield ev
        order = {"net1": 0, "net2": 1, "done": 2}
        for stage in STAGES:
            if order[stage] < order.get(run.state["stage"], 0):
                continue
            yield from _iter_stage(run, stage, rdir if saved is not None else None)
            rdir = None
        # test split: the held-out 7.5 %
        if run.data.net1_out is None:
            run.data.net1_out = _net1_outputs_all(run)
        _, test1 = _validate_net1_split(run, "test")
        _, test2 = _validate_net2(run, "test")
        run.state["test"] = {"net1": test1, "net2": test2}
        run.state["stage"] = "done"
        run.state["done"] = True
        run.opt = None
        run.save_state()
        path = run.save_model("complete")
        finished = True
        yield Done(path, False, run.elapsed(), dict(run.state["best"]), run.state["test"])
    finally:
        if not finished and run.data is not None:
            # stopped (or failed): keep a resumable state and the best model so far
            run.save_state()
            _restore_best(run)
            run.save_model("stopped")


def _restore_best(run: _Run) -> None:
    for name in STAGES:
        bp = run.best_path(name)
        if bp.exists():
            _load_weights(getattr(run.model, name), bp)


def _net1_outputs_cached(run: _Run) -> torch.Tensor:
    """Net1's outputs on every pair, reused from ``<data_cache>.net1.npz`` when Net1 and the
    data are the same (a Net1 taken over unchanged gives the same outputs every run)."""
    import hashlib

    cache = Path(run.cfg.data_cache).with_suffix(".net1.npz") if run.cfg.data_cache else None
    h = hashlib.sha256(json.dumps(run.cfg.data_key(), sort_keys=True).encode())
    h.update(json.dumps(run.model.card["net1"], sort_keys=True).encode())
    for k, v in sorted(run.model.net1.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    key = h.hexdigest()
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return torch.from_numpy(z["net1"])
    out = _net1_outputs_all(run)
    if cache is not None:
        arr = out.numpy()

        def _w(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, key=np.array(key), net1=arr)
        atomic_write(cache, _w)
    return out


def _net1_outputs_all(run: _Run) -> torch.Tensor:
    n = run.data.edges.shape[0]
    return _net1_outputs(run, np.arange(n)).to(torch.float16)


@torch.no_grad()
def _validate_net1_split(run: _Run, split: str) -> tuple[float, dict]:
    cfg = run.cfg
    idx = getattr(run.data, split)[: cfg.val_limit]
    p = run.data.net1_out[idx].float()
    t = run.data.target[idx].float()
    loss = float(boundary_loss(p, t, cfg.loss, cfg.pos_weight))
    pr, rc, f1 = tolerant_prf(p > cfg.threshold, t > 0.5, cfg.tolerance)
    return loss, {"loss": loss, "precision": pr, "recall": rc, "f1": f1}


def _iter_stage(run: _Run, stage: str, rdir: Path | None) -> Iterator[TrainEvent]:
    cfg = run.cfg
    n_epochs = cfg.net1_epochs if stage == "net1" else cfg.net2_epochs
    net = getattr(run.model, stage)
    if stage == "net2":
        # Net2 learns on the best Net1's outputs
        if run.best_path("net1").exists():
            _load_weights(run.model.net1, run.best_path("net1"))
        yield DataProgress("Net1 outputs", 0, 1)
        run.data.net1_out = _net1_outputs_cached(run)
        yield DataProgress("Net1 outputs", 1, 1)
    run.make_opt(stage)
    start_epoch, start_batch = 0, 0
    if rdir is not None and run.state["stage"] == stage:
        start_epoch, start_batch = int(run.state["epoch"]), int(run.state["batch"])
        op = rdir / "optimizer.pt"
        if op.exists():
            run.opt.load_state_dict(torch.load(op, map_location=run.device, weights_only=True))
    else:
        run.state.update({"stage": stage, "epoch": 0, "batch": 0})
        # the starting weights are a candidate too: a run never ends worse than it began
        yield from _end_epoch(run, stage, -1, n_epochs, [], float("nan"), time.perf_counter())
    stage_id = STAGES.index(stage)
    make_batch = _net1_batch if stage == "net1" else _net2_batch
    scale = (run.model.scaling1 if stage == "net1" else run.model.scaling2).output_scale
    raw = _RawHead(net, scale)
    pool = np.repeat(run.data.train, cfg.crops_per_pair)
    n_batches = math.ceil(len(pool) / cfg.batch_size)
    try:
        for epoch in range(start_epoch, n_epochs):
            t_ep = time.perf_counter()
            lr = run.set_lr(epoch)
            order = _rng(cfg, stage_id, epoch).permutation(pool)
            losses = []
            b0 = start_batch if epoch == start_epoch else 0
            for b in range(b0, n_batches):
                net.train()
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                rng = _rng(cfg, stage_id, epoch, b + 1)
                x, t = make_batch(run, idx, rng)
                extra = None
                if stage == "net1":
                    out = run.model.initial_guess(x, grad=True)
                else:
                    out = run.model.refine(x, grad=True)
                    if cfg.net2_gap_weight != 1.0:  # channel 0: the map Net2 refines
                        extra = gap_weights(x[:, :1], t, cfg.net2_gap_weight, cfg.threshold)
                loss = boundary_loss(raw.apply(out), t, cfg.loss, cfg.pos_weight, extra)
                run.opt.zero_grad(set_to_none=True)
                loss.backward()
                run.opt.step()
                lv = float(loss.detach())
                losses.append(lv)
                run.state["step"][stage] += 1
                run.state["epoch"], run.state["batch"] = epoch, b + 1
                yield Step(stage, epoch, b, n_batches, run.state["step"][stage], lv, lr)
            yield from _end_epoch(run, stage, epoch, n_epochs, losses, lr, t_ep)
    finally:
        raw.remove()
        net.eval()
    _restore_best(run)


def _end_epoch(run: _Run, stage: str, epoch: int, n_epochs: int, losses: list[float],
               lr: float, t_ep: float) -> Iterator[TrainEvent]:
    """Validate, keep the best weights, write the checkpoint (epoch -1: the initial weights)."""
    net = getattr(run.model, stage)
    net.eval()
    err, metrics = _validate_net1(run) if stage == "net1" else _validate_net2(run)
    best_prev = run.state["best"][stage]
    is_best = best_prev is None or err < best_prev
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    run.state["history"].append({"stage": stage, "epoch": epoch, "train_loss": mean_loss,
                                 "lr": lr, "val_error": err, **metrics})
    run.state["epoch"], run.state["batch"] = epoch + 1, 0
    run.state.setdefault("epochs_done", {})[stage] = epoch + 1
    if epoch >= 0:
        yield Epoch(stage, epoch, n_epochs, mean_loss, lr, time.perf_counter() - t_ep)
    yield Validation(stage, epoch, err, metrics, is_best)
    if is_best:
        run.state["best"][stage] = err
        _save_weights(net, run.best_path(stage))
    run.save_state()
    yield Checkpoint(stage, epoch, run.state["step"][stage], run.ckpt, False)
    if is_best:
        cur = {k: v.clone() for k, v in net.state_dict().items()}
        _restore_best(run)
        path = run.save_model(f"training {stage}")
        net.load_state_dict(cur)
        yield Checkpoint(stage, epoch, run.state["step"][stage], path, True)


def train(config: TrainConfig, out_dir: str | os.PathLike,
          resume: str | os.PathLike | None = None) -> Done:
    """Run :func:`iter_train` to the end and return its :class:`Done` event."""
    done = None
    for ev in iter_train(config, out_dir, resume):
        if isinstance(ev, Done):
            done = ev
    return done


def load_checkpoint_config(folder: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` saved with a training checkpoint (``DIR`` or ``DIR/checkpoint``).

    Raises
    ------
    GrainsError
        When the folder holds no checkpoint.
    """
    p = Path(folder)
    for cand in (p / _CKPT / _STATE, p / _STATE):
        if cand.exists():
            return TrainConfig.from_dict(json.loads(cand.read_text())["config"])
    raise GrainsError(f"{folder} holds no training checkpoint ({_CKPT}/{_STATE}); give the "
                      "--out folder of an earlier `napari-grains train`.")
