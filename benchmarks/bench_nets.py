"""Inference speed of the paper model's Net1 and one Net2 iteration, and what helps it.

Run ``.venv/bin/python benchmarks/bench_nets.py [--size 2048] [--threads 2]``. Prints the
floating-point operations of each net (2 × multiply-adds of the convs) and, for each variant, the
median wall time of Net1 and of one Net2 iteration on a ``size``×``size`` input:

- plain eval-mode net;
- batch norm fused into the convs;
- that plus the 1×1 head conv as an einsum;
- that plus channels-last memory format -- what ``GrainModel.initial_guess`` / ``refine`` run.

Timings depend on the machine and on its load at the time.
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


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="input height and width (multiple of 16)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
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
        "fused BN + 1x1 as einsum": lambda net: optimize_for_inference(net, channels_last=False),
        "  the same + channels_last": optimize_for_inference,  # what GrainModel runs
    }
    for name, make in variants.items():
        row = []
        for key, x in (("net1", x1), ("net2", x2)):
            net = make(getattr(model, key))
            xin = x.contiguous(memory_format=torch.channels_last) if "channels" in name else x

            def run(net=net, xin=xin):
                with torch.inference_mode():
                    net(xin)

            row.append(f"{key} {timeit(run, args.repeat):6.2f} s")
        print(f"{name:26s} " + "   ".join(row))


if __name__ == "__main__":
    main()
