"""The inference-only rewrites of :func:`napari_grains.nets.optimize_for_inference` compute the
same function as the trainable nets: FFT convolution, 2×2 max-pool as maxima, and the Net2
loop of :mod:`napari_grains.extract` on torch tensors.

Speed is measured by ``benchmarks/bench_nets.py`` and ``benchmarks/bench_extract.py``, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_grains.nets import (
    _FFTConv,
    _MaxPool2x2,
    build_model,
    load_model,
    optimize_for_inference,
    paper_card,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def paper():
    return load_model("paper")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("cin, cout, k, shape", [
    (1, 4, 15, (2, 1, 37, 53)),     # the paper's Net2 first conv, a batch, odd sizes
    (3, 5, 11, (1, 3, 16, 29)),     # several input channels (summed in frequency space)
    (1, 2, 13, (1, 1, 5, 9)),       # image smaller than the kernel
])
def test_fft_conv_equals_direct_conv(cin, cout, k, shape):
    g = torch.Generator().manual_seed(cin * 100 + k)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(cout, generator=g))
    x = torch.randn(shape, generator=g) * 50 - 20       # Net2 sees inputs of this range
    fft = _FFTConv(conv)
    with torch.inference_mode():
        got, want = fft(x), conv(x)
    assert got.shape == want.shape
    assert _rel_err(got, want) < 1e-5


def test_fft_conv_keeps_a_bounded_cache_of_spectra():
    conv = _FFTConv(nn.Conv2d(1, 4, 15, padding=7))
    with torch.inference_mode():
        for n in range(16, 16 + 8 * 16, 16):
            conv(torch.rand(1, 1, n, 32))
    assert len(conv._spectra) == _FFTConv._CACHE


@pytest.mark.parametrize("shape", [(1, 4, 32, 48), (2, 3, 33, 17), (1, 8, 3, 5)])
def test_maxpool_as_maxima_equals_maxpool(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_MaxPool2x2()(x), nn.MaxPool2d(2, stride=2)(x), rtol=0, atol=0)


def test_paper_net2_uses_the_rewrites(paper):
    fast = optimize_for_inference(paper.net2)
    assert isinstance(fast.enc[0].conv, _FFTConv)                  # 15×15, 1 input channel
    assert not isinstance(fast.enc[1].conv, _FFTConv)              # 7×7, 4 channels: direct
    assert isinstance(fast.pool, _MaxPool2x2)
    plain = optimize_for_inference(paper.net2, fft=False)
    assert isinstance(plain.enc[0].conv, nn.Conv2d)


@pytest.mark.parametrize("shape", [(1, 1, 96, 496), (2, 1, 64, 48)])
def test_fast_net2_matches_the_trainable_net(paper, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        want = paper.refine(x, grad=True)
    torch.testing.assert_close(paper.refine(x), want, rtol=0, atol=2e-5)


def test_fast_path_of_a_model_with_batch_norm_and_a_big_first_kernel():
    card = paper_card()
    card["net2"]["params"].update(batch_norm=True, encoder_kernels=[13, 5, 3, 3])
    m = build_model(card, seed=5)
    m.net2.eval()
    x = torch.rand(1, 1, 48, 64, generator=torch.Generator().manual_seed(3))
    assert isinstance(optimize_for_inference(m.net2).enc[0].conv, _FFTConv)
    with torch.inference_mode():
        want = m.refine(x, grad=True)
    torch.testing.assert_close(m.refine(x), want, rtol=0, atol=2e-5)


def test_net2_loop_on_tensors_matches_numpy_rule(paper):
    """The Net2 loop gives the maps and changes of the rule computed here in numpy."""
    from napari_grains.extract import ExtractParams, _pad_to, iter_net2

    rng = np.random.default_rng(4)
    init = rng.random((40, 70), dtype=np.float32)        # not multiples of 16: padded each time
    p = ExtractParams(mode="native", scale=1.0, max_iterations=3, tolerance=0.0)
    got = list(iter_net2(init, paper, p))
    assert [k for k, *_ in got] == [1, 2, 3]
    prev = init
    for k, y, change, conv in got:
        x, _ = _pad_to(prev[None], paper.multiple)
        want = paper.refine(torch.from_numpy(np.ascontiguousarray(x))[None])[0, 0, :40, :70]
        np.testing.assert_allclose(y, want.numpy(), atol=2e-5, rtol=0)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (40, 70)
        assert change == pytest.approx(float(np.abs(y - prev).mean(dtype=np.float64)), rel=1e-4)
        assert not conv
        prev = y


def test_reuse_freed_memory_nests_and_restores():
    from napari_grains import nets

    assert nets._alloc_users == 0
    with nets.reuse_freed_memory():
        with nets.reuse_freed_memory():
            assert nets._alloc_users == (2 if nets._glibc() is not None else 0)
            big = np.ones((1024, 1024, 8), np.float32)          # 32 MB, served inside the block
            assert float(big.sum()) == 1024 * 1024 * 8
        del big
    assert nets._alloc_users == 0


def test_abandoned_net2_loop_restores_the_allocator(paper):
    from napari_grains import nets
    from napari_grains.extract import ExtractParams, iter_net2

    gen = iter_net2(np.zeros((32, 48), np.float32), paper,
                    ExtractParams(mode="native", scale=1.0, max_iterations=5, tolerance=0.0))
    next(gen)
    assert nets._alloc_users == (1 if nets._glibc() is not None else 0)
    gen.close()                                                  # a GUI stopping the loop
    assert nets._alloc_users == 0
