"""Inference speed of the paper model's Net1 and one Net2 iteration, and what helps it.

Run ``.venv/bin/python benchmarks/bench_nets.py [--size 2048] [--threads 2]``. Prints the
floating-point operations of each net (2 × multiply-adds of the convs) and, for each variant, the
median wall time of Net1 and of one Net2 iteration on a ``size``×``size`` input:

- plain eval-mode net;
- batch norm fused into the convs;
- that plus the 1×1 head conv as an einsum;
- that plus channels-last memory format;
- that plus 2×2 max-pools as two element-wise maxima;
- that plus big few-channel convs (Net2's 15×15, 1 -> 4) through FFTs -- what
  ``GrainModel.initial_guess`` / ``refine`` run.

``--fft`` times the FFT building blocks instead (process CPU ms, median): torch's and SciPy's
forward real FFT, and torch's inverse on four maps batched vs one map at a time, at 96×496
and at ``size``.

Timings depend on the machine and on its load at the time; CPU ms sums all threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from napari_grains.nets import fuse_batch_norm, load_model, optimize_for_inference


def macs(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the convs and transposed convs for input ``x``."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        if isinstance(mod, nn.ConvTranspose2d):
            total += inp[0].numel() * mod.out_channels * k
        else:
            total += out.numel() * mod.in_channels * k

    hs = [m.register_forward_hook(hook) for m in net.modules()
          if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        net(x)
    for h in hs:
        h.remove()
    return total


def timeit(fn, repeat: int) -> tuple[float, float]:
    """Median wall seconds and median process-CPU seconds of ``fn()``."""
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def _fft_cases(a, fh: int, fw: int) -> dict:
    import scipy.fft

    ta = torch.from_numpy(a)
    spec4 = torch.fft.rfft2(ta, s=(fh, fw)).expand(4, -1, -1).contiguous()
    return {
        "torch rfft2": lambda: torch.fft.rfft2(ta, s=(fh, fw)),
        "scipy rfft2, 1 worker": lambda: scipy.fft.rfft2(a, s=(fh, fw), workers=1),
        "torch irfft2, 4 maps batched": lambda: torch.fft.irfft2(spec4, s=(fh, fw)),
        "torch irfft2, 4 maps one by one":
            lambda: [torch.fft.irfft2(spec4[i], s=(fh, fw)) for i in range(4)],
    }


def fft_blocks(size: int, repeat: int) -> None:
    """CPU ms of the FFT building blocks of ``_FFTConv`` at 96×496 and size×size."""
    import numpy as np
    import scipy.fft

    print(f"FFT building blocks, {torch.get_num_threads()} torch threads "
          "(process CPU ms, median):")
    for h, w in ((96, 496), (size, size)):
        fh = scipy.fft.next_fast_len(h + 7, real=True)
        fw = scipy.fft.next_fast_len(w + 7, real=True)
        a = np.random.default_rng(0).random((h, w), dtype=np.float32)
        cases = _fft_cases(a, fh, fw)
        row = "   ".join(f"{k} {1e3 * timeit(f, repeat)[1]:7.2f}" for k, f in cases.items())
        print(f"  {h}x{w}: {row}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="input height and width (multiple of 16)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--fft", action="store_true", help="time the FFT building blocks instead")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.fft:
        fft_blocks(args.size, max(args.repeat, 9))
        return
    model = load_model("paper")
    s = args.size
    x1 = torch.rand(1, 3, s, s) * 255
    x2 = torch.rand(1, 1, s, s) * 255 - 27.37
    print(f"input {s}x{s}, {args.threads} threads, torch {torch.__version__}")
    for key, x in (("net1", x1), ("net2", x2)):
        print(f"{key}: {2 * macs(getattr(model, key), x) / 1e9:.1f} GFLOP per pass")
    variants = {
        "plain eval": lambda net: net,
        "fused BN": fuse_batch_norm,
        "fused BN + 1x1 as einsum": lambda net: optimize_for_inference(
            net, channels_last=False, fft=False, pool=False),
        "  + channels_last": lambda net: optimize_for_inference(net, fft=False, pool=False),
        "  + 2x2 max-pool as maxima": lambda net: optimize_for_inference(net, fft=False),
        "  + FFT conv (GrainModel)": optimize_for_inference,  # what GrainModel runs
    }
    print("wall s / process CPU s (median):")
    for name, make in variants.items():
        row = []
        for key, x in (("net1", x1), ("net2", x2)):
            net = make(getattr(model, key))
            xin = x if name in ("plain eval", "fused BN", "fused BN + 1x1 as einsum") else (
                x.contiguous(memory_format=torch.channels_last))

            def run(net=net, xin=xin):
                with torch.inference_mode():
                    net(xin)

            wall, cpu = timeit(run, args.repeat)
            row.append(f"{key} {wall:6.2f} / {cpu:6.2f}")
        print(f"{name:28s} " + "   ".join(row))


if __name__ == "__main__":
    main()
