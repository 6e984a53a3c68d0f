"""DSA: fused kernel vs reference (forward and gradient) per family and mode 'M', gradcheck, opcheck,
compile, Siamese replay, parameter sampling, the published index arithmetic, bad input, CUDA.

Tolerances: colour, crop, cutout and flip are exact up to rounding (the dtype tolerances of
tests/conftest.py); scale/rotate resample within RESAMPLE_TOL (the kernel computes sampling
coordinates in closed form where affine_grid uses linspace + matmul: ~1e-6 px apart in float32).
"""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from medistill.ops import DSAParams, DSAugment, capture_cuda_graph, dsa, has_ops, reference, sample_dsa_params
from medistill.ops import dsa_params
from medistill.ops.dsa_params import DEFAULT_STRATEGY, FAMILIES, FAMILY_BITS
from tests.conftest import requires_cuda, tolerances

dsa_module = importlib.import_module("medistill.ops.dsa")  # the module (the package attribute is the function)

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")

RESAMPLE_TOL = {torch.float32: dict(atol=2e-4, rtol=1e-4), torch.float64: dict(atol=1e-9, rtol=1e-9)}
EXACT_FAMILIES = {"color", "crop", "cutout", "flip"}
ALL = "_".join(FAMILIES)


def tol(family: str, dtype: torch.dtype) -> dict:
    return tolerances(dtype) if family in EXACT_FAMILIES else RESAMPLE_TOL[dtype]


def draw(family: str, batch: int, height: int, width: int, seed: int = 0, siamese: bool = False):
    """Params with exactly `family` ('M' / 'M-composed': every family); mode 'M' makes that deterministic."""
    strategy = ALL if family.startswith("M") else family
    gen = torch.Generator().manual_seed(seed)
    return sample_dsa_params(batch, height, width, strategy=strategy, mode="M", siamese=siamese, generator=gen)


def make_x(batch, channels, height, width, layout="contiguous", dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if layout == "transposed":
        return torch.randn(batch, channels, width, height, generator=gen, dtype=dtype).transpose(2, 3)
    if layout == "sliced":
        return torch.randn(batch, channels, height, 2 * width, generator=gen, dtype=dtype)[..., ::2]
    x = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x


# (family, channels, (H, W), batch, layout, align_corners): every family and mode 'M' with 1 and 3
# channels; each of 28/32/64 px, batch 1/10/256, the four layouts and both align_corners appear.
CASES = [
    ("color", 1, (28, 28), 10, "contiguous", False),
    ("color", 3, (32, 32), 256, "channels_last", True),
    ("crop", 1, (28, 28), 256, "channels_last", False),
    ("crop", 3, (64, 64), 1, "transposed", True),
    ("cutout", 1, (64, 64), 10, "sliced", False),
    ("cutout", 3, (27, 27), 1, "contiguous", True),
    ("flip", 1, (32, 32), 1, "contiguous", True),
    ("flip", 3, (28, 28), 256, "transposed", False),
    ("scale", 1, (28, 28), 256, "contiguous", False),
    ("scale", 3, (64, 64), 10, "channels_last", True),
    ("rotate", 1, (64, 64), 1, "sliced", True),
    ("rotate", 3, (20, 28), 10, "contiguous", False),
    ("M", 1, (32, 32), 10, "contiguous", False),
    ("M", 3, (28, 28), 256, "sliced", True),
    ("M", 3, (64, 48), 1, "transposed", False),
    ("M-composed", 1, (28, 28), 10, "channels_last", True),
    ("M-composed", 3, (32, 32), 10, "contiguous", False),
]


@needs_ops
@pytest.mark.parametrize("family,channels,size,batch,layout,align_corners", CASES)
def test_kernel_matches_reference(family, channels, size, batch, layout, align_corners):
    H, W = size
    params = draw(family, batch, H, W, seed=batch + H)
    compose = family == "M-composed"
    x = make_x(batch, channels, H, W, layout).requires_grad_(True)
    out = dsa(x, params, align_corners=align_corners, compose_affine=compose)
    expected = reference.dsa(x, params, align_corners=align_corners, compose_affine=compose)
    assert out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, **tol(family, x.dtype))
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (got,) = torch.autograd.grad(out, x, g)
    (want,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(got, want, **tol(family, x.dtype))
    if family != "flip":  # flip draws may leave the image as is; everything else must change it
        assert not torch.equal(out, x)


@needs_ops
@pytest.mark.parametrize("mode", ["S", "M"])
def test_kernel_matches_reference_mixed_families(mode):
    """Per-sample family masks that differ within the batch (built by hand) follow the reference."""
    params = sample_dsa_params(6, 16, 16, mode="M", generator=torch.Generator().manual_seed(3))
    bits = [FAMILY_BITS[f] for f in FAMILIES] if mode == "S" else [0, 63, 1 | 16, 8 | 32, 2 | 4 | 8, 63]
    ints = params.ints.clone()
    ints[:, 0] = torch.tensor(bits, dtype=torch.int32)
    params = params._replace(ints=ints)
    x = make_x(6, 3, 16, 16).requires_grad_(True)
    for compose in (False, True):
        out = dsa(x, params, compose_affine=compose)
        expected = reference.dsa(x, params, compose_affine=compose)
        torch.testing.assert_close(out, expected, **RESAMPLE_TOL[torch.float32])
        (got,) = torch.autograd.grad(out.square().sum(), x)
        (want,) = torch.autograd.grad(expected.square().sum(), x)
        torch.testing.assert_close(got, want, **RESAMPLE_TOL[torch.float32])


@needs_ops
@pytest.mark.parametrize("family", list(FAMILIES) + ["M", "M-composed"])
def test_gradcheck_float64(family):
    params = draw(family, 2, 6, 7, seed=5)
    x = make_x(2, 3, 6, 7, dtype=torch.float64).requires_grad_(True)
    compose = family == "M-composed"
    assert torch.autograd.gradcheck(lambda t: dsa(t, params, compose_affine=compose), (x,))
    assert torch.autograd.gradcheck(lambda t: dsa(t, params, align_corners=True), (x,))


@needs_ops
def test_gradcheck_float64_siamese():
    params = draw("M", 1, 6, 6, seed=6, siamese=True)
    x = make_x(3, 1, 6, 6, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: dsa(t, params), (x,))


@needs_ops
@pytest.mark.parametrize("siamese", [False, True])
def test_opcheck(siamese):
    params = draw("M", 4, 10, 12, seed=7, siamese=siamese)
    x = make_x(4, 3, 10, 12).requires_grad_(True)
    for compose in (False, True):
        torch.library.opcheck(torch.ops.medistill.dsa.default, (x, params.ints, params.floats, False, compose))
    g = make_x(4, 3, 10, 12, seed=1)
    torch.library.opcheck(torch.ops.medistill.dsa_backward.default, (g, params.ints, params.floats, True, False))


@needs_ops
def test_autograd_is_the_adjoint_op_and_twice_differentiable():
    """C++ autograd: the gradient is exactly dsa_backward, and its own derivative is dsa again."""
    params = draw("M", 6, 28, 28, seed=9)
    x = make_x(6, 3, 28, 28).requires_grad_(True)
    g = make_x(6, 3, 28, 28, seed=2)
    out = dsa(x, params)
    assert out.grad_fn is not None
    assert torch.equal(out, torch.ops.medistill.dsa.default(x.detach(), params.ints, params.floats, False, False))
    (gx,) = torch.autograd.grad(out, x, g)
    assert torch.equal(gx, torch.ops.medistill.dsa_backward.default(g, params.ints, params.floats, False, False))
    small = draw("M", 2, 6, 7, seed=3)
    x64 = make_x(2, 3, 6, 7, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: dsa(t, small, compose_affine=True), (x64,))
    g64 = make_x(2, 3, 6, 7, seed=4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: torch.ops.medistill.dsa_backward.default(t, small.ints, small.floats, False, False), (g64,))


@needs_ops
@pytest.mark.parametrize("mode", ["S", "M"])
@pytest.mark.parametrize("rows", [0, 1, 256])
def test_sampling_op_matches_eager_sampler_bit_for_bit(mode, rows):
    """medistill::dsa_sample (one op) and the eager fallback give the same params from one seed."""
    for strategy in (DEFAULT_STRATEGY, "rotate", "crop_flip"):
        const = dsa_params._constants(torch.device("cpu"), 28, 28, dsa_params.parse_strategy(strategy, mode), mode)
        for seed in range(3):
            ints, floats = torch.ops.medistill.dsa_sample.default(
                const.offset, const.span, const.token_bits, rows, mode == "S", torch.Generator().manual_seed(seed))
            want_ints, want_floats = dsa_params.sample_eager(const, rows, mode, torch.Generator().manual_seed(seed))
            assert ints.dtype == torch.int32 and floats.dtype == torch.float32
            assert torch.equal(ints, want_ints) and torch.equal(floats, want_floats)
    torch.library.opcheck(torch.ops.medistill.dsa_sample.default,
                          (const.offset, const.span, const.token_bits, rows, mode == "S", None),
                          test_utils=("test_schema", "test_faketensor"))


@needs_ops
def test_compile_fullgraph():
    params = draw("M", 4, 28, 28, seed=8)
    x = make_x(4, 3, 28, 28).requires_grad_(True)
    compiled = torch.compile(lambda t, p: dsa(t, p) * 2, fullgraph=True, backend="aot_eager")
    out = compiled(x, params)
    expected = reference.dsa(x, params) * 2
    torch.testing.assert_close(out, expected, **RESAMPLE_TOL[torch.float32])
    (got,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(got, want, **RESAMPLE_TOL[torch.float32])


# ---- Siamese -------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["medistill", "reference"])
@pytest.mark.parametrize("mode", ["S", "M"])
def test_siamese_same_transform_for_256_and_1(impl, mode):
    if impl == "medistill" and not has_ops():
        pytest.skip("medistill._C not built")
    fn = dsa if impl == "medistill" else reference.dsa
    for seed in range(4):  # mode 'S': several families
        params = sample_dsa_params(256, 28, 28, mode=mode, siamese=True, generator=torch.Generator().manual_seed(seed))
        assert params.batch_size == 1
        real = make_x(256, 3, 28, 28, seed=seed)
        out = fn(real, params)
        for k in (0, 1, 100, 255):  # per sample: the batch of 256 and a batch of one agree exactly
            assert torch.equal(fn(real[k : k + 1], params), out[k : k + 1])
        same = fn(real[:1].expand(256, -1, -1, -1), params)  # identical inputs -> identical outputs
        assert torch.equal(same, out[:1].expand_as(same))


@needs_ops
def test_siamese_ipc1_with_gradient_and_one_channel_after_crop():
    """The published code's crashes: IPC=1 with Siamese DSA; 1-channel images after crop."""
    params = draw("M", 1, 28, 28, seed=9, siamese=True)
    syn = make_x(1, 1, 28, 28).requires_grad_(True)
    real = make_x(256, 1, 28, 28, seed=1)
    loss = dsa(syn, params).mean() - dsa(real, params).mean()
    loss.backward()
    assert syn.grad.shape == syn.shape and torch.isfinite(syn.grad).all()
    cropped = dsa(make_x(2, 1, 28, 28, "channels_last"), draw("crop", 1, 28, 28, siamese=True))
    assert cropped.view(2, -1).shape == (2, 784)  # the published crop broke this .view


def test_expand_siamese_params():
    params = draw("M", 1, 8, 8, siamese=True)
    wide = params.expand(5)
    assert wide.batch_size == 5 and torch.equal(wide.ints, params.ints.expand(5, -1))
    x = make_x(5, 3, 8, 8)
    torch.testing.assert_close(reference.dsa(x, wide), reference.dsa(x, params))
    with pytest.raises(ValueError, match="non-Siamese"):
        draw("M", 4, 8, 8).expand(5)


# ---- sampling ------------------------------------------------------------------------------------

def test_sampling_is_deterministic_and_typed():
    a = sample_dsa_params(32, 28, 28, generator=torch.Generator().manual_seed(0))
    b = sample_dsa_params(32, 28, 28, generator=torch.Generator().manual_seed(0))
    c = sample_dsa_params(32, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.ints, b.ints) and torch.equal(a.floats, b.floats)
    assert not torch.equal(a.floats, c.floats)
    assert a.ints.dtype == torch.int32 and a.floats.dtype == torch.float32
    assert a.ints.shape == (32, 6) and a.floats.shape == (32, 6) and a.floats.stride(1) == 1
    assert sample_dsa_params(0, 28, 28).batch_size == 0


def test_sampling_ranges_match_published_distributions():
    p = sample_dsa_params(20000, 28, 28, mode="M", generator=torch.Generator().manual_seed(0))
    assert (p.families == 63).all()
    crop, cut = p.crop, p.cutout
    assert crop.min() == -4 and crop.max() == 4  # int(28 * 0.125 + 0.5) = 4, both ends reached
    assert cut.min() == 0 and cut.max() == 28  # side 14 (even): randint(0, 28 + 1)
    odd = sample_dsa_params(5000, 25, 25, mode="M", generator=torch.Generator().manual_seed(0))
    assert odd.cutout.max() == 24 and odd.crop.abs().max() == 3  # side 13 (odd): randint(0, 25)
    assert abs(p.flip.float().mean().item() - 0.5) < 0.02
    bright, sat, con = p.color.unbind(1)
    assert bright.min() >= -0.5 and bright.max() < 0.5
    assert sat.min() >= 0 and sat.max() < 2 and con.min() >= 0.5 and con.max() < 1.5
    assert p.scale.min() >= 1 / 1.2 - 1e-6 and p.scale.max() <= 1.2 + 1e-6
    assert p.angle.abs().max() <= math.radians(15) + 1e-6 and p.angle.abs().max() > math.radians(14.9)


def test_mode_s_picks_one_family_per_call():
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        p = sample_dsa_params(8, 28, 28, mode="S", generator=gen)
        fam = p.families.unique().tolist()
        assert len(fam) == 1 and fam[0] in FAMILY_BITS.values()
        seen.add(fam[0])
    assert seen == set(FAMILY_BITS.values())
    sub = {sample_dsa_params(2, 8, 8, strategy="flip_crop", generator=gen).families[0].item() for _ in range(50)}
    assert sub == {FAMILY_BITS["flip"], FAMILY_BITS["crop"]}


# ---- the reference against the published index arithmetic ---------------------------------------

def params_by_hand(batch, H, W, families, crop=(0, 0), cutout=(0, 0), flip=0, color=(0.0, 1.0, 1.0),
                   scale=(1.0, 1.0), angle=0.0):
    ints = torch.tensor([[families, *crop, *cutout, flip]] * batch, dtype=torch.int32)
    floats = torch.tensor([[*color, *scale, angle]] * batch, dtype=torch.float32)
    return DSAParams(ints, floats, H, W, False)


def published_cutout_mask(H, W, centre):
    """The published mask: meshgrid of the k x k square, indices clamped to the image, zeroed."""
    kh, kw = int(H * 0.5 + 0.5), int(W * 0.5 + 0.5)
    gx, gy = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
    gx = torch.clamp(gx + centre[0] - kh // 2, min=0, max=H - 1)
    gy = torch.clamp(gy + centre[1] - kw // 2, min=0, max=W - 1)
    mask = torch.ones(H, W)
    mask[gx, gy] = 0
    return mask


@pytest.mark.parametrize("size", [(28, 28), (27, 25)])
def test_cutout_matches_published_index_arithmetic(size):
    H, W = size
    x = make_x(1, 2, H, W)
    fns = [reference.dsa] + ([dsa] if has_ops() else [])
    for centre in [(0, 0), (H, W - 1), (13, 3), (H - 1 - H % 2, 0), (5, W - W % 2)]:
        params = params_by_hand(1, H, W, FAMILY_BITS["cutout"], cutout=centre)
        for fn in fns:
            torch.testing.assert_close(fn(x, params), x * published_cutout_mask(H, W, centre), rtol=0, atol=0)


def test_crop_flip_color_match_their_definitions():
    H, W = 7, 9
    x = make_x(2, 3, H, W)
    fns = [reference.dsa] + ([dsa] if has_ops() else [])
    for dy, dx in [(1, -2), (-3, 4), (0, 0), (7, 0)]:
        want = torch.zeros_like(x)
        for i in range(H):
            for j in range(W):
                if 0 <= i + dy < H and 0 <= j + dx < W:
                    want[:, :, i, j] = x[:, :, i + dy, j + dx]
        for fn in fns:
            assert torch.equal(fn(x, params_by_hand(2, H, W, FAMILY_BITS["crop"], crop=(dy, dx))), want)
    for fn in fns:
        assert torch.equal(fn(x, params_by_hand(2, H, W, FAMILY_BITS["flip"], flip=1)), x.flip(3))
        assert torch.equal(fn(x, params_by_hand(2, H, W, FAMILY_BITS["flip"], flip=0)), x)
    b, s, c = 0.3, 1.7, 0.6
    y = x + b
    y = (y - y.mean(1, keepdim=True)) * s + y.mean(1, keepdim=True)
    y = (y - y.mean([1, 2, 3], keepdim=True)) * c + y.mean([1, 2, 3], keepdim=True)
    for fn in fns:
        torch.testing.assert_close(fn(x, params_by_hand(2, H, W, FAMILY_BITS["color"], color=(b, s, c))), y)
        one = x[:, :1]  # saturation is the identity on one channel
        torch.testing.assert_close(
            fn(one, params_by_hand(2, H, W, FAMILY_BITS["color"], color=(0.0, s, 1.0))), one
        )


@pytest.mark.parametrize("align_corners", [False, True])
def test_resampling_identity_and_quarter_turn(align_corners):
    x = make_x(2, 3, 12, 12)
    fns = [reference.dsa] + ([dsa] if has_ops() else [])
    still = params_by_hand(2, 12, 12, FAMILY_BITS["scale"] | FAMILY_BITS["rotate"])
    for fn in fns:
        torch.testing.assert_close(fn(x, still, align_corners=align_corners), x, atol=1e-5, rtol=1e-5)
    if align_corners:  # pixel centres map onto pixel centres: out[i, j] = x[j, W - 1 - i]
        quarter = params_by_hand(2, 12, 12, FAMILY_BITS["rotate"], angle=math.pi / 2)
        for fn in fns:
            torch.testing.assert_close(fn(x, quarter, align_corners=True), x.transpose(2, 3).flip(2), atol=1e-5,
                                       rtol=1e-5)
    theta = torch.tensor([[[1.1, 0.0, 0.0], [0.0, 0.9, 0.0]]]).expand(2, 2, 3)
    zoom = params_by_hand(2, 12, 12, FAMILY_BITS["scale"], scale=(1.1, 0.9))
    want = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=align_corners),
                         align_corners=align_corners)
    for fn in fns:
        torch.testing.assert_close(fn(x, zoom, align_corners=align_corners), want, **RESAMPLE_TOL[torch.float32])


@needs_ops
@pytest.mark.parametrize("scale", [(0.2, 0.3), (3.0, 2.5), (0.9, 1.15)])
def test_scale_far_outside_dsa_range_matches_reference(scale):
    """The CPU backward's transposed (gather) taps serve up to 4 outputs per input column; a strong
    magnification (theta scale 0.2: each input column feeds ~10 outputs) takes the scatter path. Both
    must equal the reference."""
    x = make_x(3, 3, 28, 28).requires_grad_(True)
    params = params_by_hand(3, 28, 28, FAMILY_BITS["scale"], scale=scale)
    g = make_x(3, 3, 28, 28, seed=5)
    out, want = dsa(x, params), reference.dsa(x, params)
    torch.testing.assert_close(out, want, **RESAMPLE_TOL[torch.float32])
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(want, x, g)[0],
                               **RESAMPLE_TOL[torch.float32])


@needs_ops
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (9, 17), (28, 33)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("family", ["scale", "rotate"])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_resampling_of_odd_sizes_matches_reference(family, channels, size):
    """The float32 CPU resamplers work in blocks (scale: 8 columns through a 16-wide window; rotate:
    4 pixels through zero-padded planes): widths below one block, odd widths and a partial last
    block, any channel count, must still equal the reference forward and backward."""
    H, W = size
    bits = FAMILY_BITS[family]
    params = params_by_hand(4, H, W, bits, scale=(0.85, 1.18), angle=0.23) if family == "scale" else \
        params_by_hand(4, H, W, bits, angle=-0.26)
    x = make_x(4, channels, H, W).requires_grad_(True)
    g = make_x(4, channels, H, W, seed=3)
    for align_corners in (False, True):
        out = dsa(x, params, align_corners=align_corners)
        want = reference.dsa(x, params, align_corners=align_corners)
        torch.testing.assert_close(out, want, **RESAMPLE_TOL[torch.float32])
        torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(want, x, g)[0],
                                   **RESAMPLE_TOL[torch.float32])


def test_rotate_ignores_non_finite_pixels_it_does_not_read():
    """In float32, rotate's out-of-image taps read a zero pad (not a clamped edge pixel times weight
    0), so an inf on the image border reaches only the outputs that sample it, as with grid_sample's
    zero padding. (The float64 loops still clamp, and the separable scale path combines whole rows,
    so there an inf can still turn into NaN.)"""
    x = make_x(2, 3, 28, 28)
    x[:, :, 0, 14] = float("inf")
    x[:, :, 14, 27] = float("-inf")
    for angle in (0.26, -0.2):
        params = params_by_hand(2, 28, 28, FAMILY_BITS["rotate"], angle=angle)
        out, want = dsa(x, params), reference.dsa(x, params)
        assert want.isinf().any()
        assert torch.equal(out.isnan(), want.isnan()) and torch.equal(out.isinf(), want.isinf())
        finite = want.isfinite()
        torch.testing.assert_close(out[finite], want[finite], **RESAMPLE_TOL[torch.float32])


# ---- module, fallback, errors --------------------------------------------------------------------

def test_dsaugment_replay_and_reproducibility():
    x = make_x(10, 3, 28, 28)
    a = DSAugment(mode="M", generator=torch.Generator().manual_seed(0))
    b = DSAugment(mode="M", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a(x), b(x))
    aug = DSAugment(siamese=True, generator=torch.Generator().manual_seed(1))
    params = aug.sample(1, 28, 28, x.device)
    assert params.siamese and params.batch_size == 1
    torch.testing.assert_close(aug(x, params), dsa(x, params))
    torch.testing.assert_close(aug(x[:1], params), dsa(x, params)[:1])
    assert DSAugment("none")(x) is x
    assert "strategy=" in repr(aug)


def test_fallback_uses_reference(monkeypatch):
    monkeypatch.setattr(dsa_module, "use_kernel", lambda *t: False)
    params = draw("M", 3, 16, 16)
    x = make_x(3, 3, 16, 16)
    assert torch.equal(dsa(x, params), reference.dsa(x, params))


def test_bad_input_names_the_problem():
    params = draw("M", 4, 28, 28)
    x = make_x(4, 3, 28, 28)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        dsa(x[0], params)
    with pytest.raises(ValueError, match="batch size 4 but x has batch size 3"):
        dsa(x[:3], params)
    with pytest.raises(TypeError, match="floating-point"):
        dsa(x.long(), params)
    with pytest.raises(ValueError, match="28x28 images, x is 28x27"):
        dsa(x[..., :27], params)
    with pytest.raises(TypeError, match="DSAParams"):
        dsa(x, (params.ints, params.floats))
    with pytest.raises(ValueError, match="unknown strategy token 'zoom'"):
        sample_dsa_params(4, 28, 28, strategy="color_zoom")
    with pytest.raises(ValueError, match="unknown strategy token 'zoom'"):
        DSAugment("zoom")
    with pytest.raises(ValueError, match="unknown mode"):
        sample_dsa_params(4, 28, 28, mode="X")
    with pytest.raises(ValueError, match="out of order"):
        sample_dsa_params(4, 28, 28, strategy="flip_color", mode="M")
    with pytest.raises(ValueError, match="height and width must be positive ints"):
        sample_dsa_params(4, 0, 28)
    # The per-signature validation cache is typed: a float size is refused even after the int one
    # was drawn, and an unhashable one still gets the message.
    sample_dsa_params(4, 28, 28)
    with pytest.raises(ValueError, match="sizes must be ints"):
        sample_dsa_params(4.0, 28, 28)
    with pytest.raises(ValueError, match="sizes must be ints"):
        sample_dsa_params([4], 28, 28)
    with pytest.raises(TypeError, match="strategy must be a string"):
        sample_dsa_params(4, 28, 28, strategy=["color"])


@needs_ops
def test_op_checks_name_the_problem():
    params = draw("M", 4, 8, 8)
    x = make_x(4, 3, 8, 8)
    with pytest.raises(RuntimeError, match="params batch size 3 must be 1"):
        torch.ops.medistill.dsa(x, params.ints[:3], params.floats[:3], False, False)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        torch.ops.medistill.dsa(x.half(), params.ints, params.floats, False, False)
    with pytest.raises(RuntimeError, match="ints must be an integer tensor"):
        torch.ops.medistill.dsa(x, params.floats, params.floats, False, False)
    with pytest.raises(RuntimeError, match=r"\(P, 6\)"):
        torch.ops.medistill.dsa(x, params.ints[:, :5], params.floats, False, False)


# ---- CUDA (skipped without a GPU) ----------------------------------------------------------------

@requires_cuda
@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", list(FAMILIES) + ["M", "M-composed"])
def test_cuda_matches_cpu(family, dtype):
    params = draw(family, 16, 28, 28, seed=11)
    x = make_x(16, 3, 28, 28).requires_grad_(True)
    compose = family == "M-composed"
    out = dsa(x, params, compose_affine=compose)
    xc = x.detach().cuda().to(dtype).requires_grad_(True)
    out_cuda = dsa(xc, params.to("cuda"), compose_affine=compose)
    t = tolerances(dtype) if dtype != torch.float32 else tol(family, dtype)
    scale = dict(atol=t["atol"] * 10, rtol=t["rtol"] * 10) if dtype != torch.float32 else t
    torch.testing.assert_close(out_cuda.float().cpu(), out, **scale)
    g = torch.randn(out.shape)
    (got,) = torch.autograd.grad(out_cuda, xc, g.cuda().to(dtype))
    (want,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(got.float().cpu(), want, **scale)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("family", ["color", "rotate", "M", "M-composed"])
@pytest.mark.parametrize("shape", [(5, 1, 17, 23), (3, 5, 32, 32), (1, 3, 64, 48)], ids=str)
@pytest.mark.parametrize("siamese", [False, True], ids=["per-sample", "siamese"])
def test_cuda_matches_cpu_in_float64_across_shapes(family, shape, siamese):
    """One block per sample: any channel count and size (more pixels than threads, fewer, not a
    multiple), per-sample and Siamese params, forward and backward, in float64."""
    B, C, H, W = shape
    params = draw(family, 1 if siamese else B, H, W, seed=14, siamese=siamese)
    compose = family == "M-composed"
    x = make_x(B, C, H, W, dtype=torch.float64).requires_grad_(True)
    g = torch.randn(B, C, H, W, dtype=torch.float64)
    out = dsa(x, params, compose_affine=compose)
    (want,) = torch.autograd.grad(out, x, g)
    xc = x.detach().cuda().requires_grad_(True)
    out_cuda = dsa(xc, params.to("cuda"), compose_affine=compose)
    (got,) = torch.autograd.grad(out_cuda, xc, g.cuda())
    torch.testing.assert_close(out_cuda.cpu(), out, **RESAMPLE_TOL[torch.float64])
    torch.testing.assert_close(got.cpu(), want, **RESAMPLE_TOL[torch.float64])


@requires_cuda
@needs_ops
def test_cuda_siamese_sampling_and_no_host_sync():
    gen = torch.Generator(device="cuda").manual_seed(0)
    sample_dsa_params(1, 28, 28, mode="M", siamese=True, generator=gen, device="cuda")  # caches the constants
    x = torch.randn(256, 3, 28, 28, device="cuda", requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        params = sample_dsa_params(1, 28, 28, mode="M", siamese=True, generator=gen, device="cuda")
        out = dsa(x, params)
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert params.ints.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), dsa(x.detach().cpu(), params.to("cpu")), **RESAMPLE_TOL[torch.float32])
    torch.testing.assert_close(
        out[:1], dsa(x[:1].detach(), params), **RESAMPLE_TOL[torch.float32]
    )
    assert grad.shape == x.shape


@requires_cuda
@needs_ops
def test_cuda_graph_capture_of_the_op():
    params = draw("M", 8, 28, 28, seed=12).to("cuda")
    static_x = torch.randn(8, 3, 28, 28, device="cuda")
    graph, static_out = capture_cuda_graph(lambda: dsa(static_x, params), warmup=2)
    static_x.copy_(torch.randn(8, 3, 28, 28, device="cuda"))
    graph.replay()
    torch.testing.assert_close(static_out, dsa(static_x, params))


@requires_cuda
@needs_ops
@pytest.mark.parametrize("family", ["rotate", "M"])
def test_cuda_one_launch_each_way(family):
    """The op itself: one kernel forward, one backward, and nothing else on the GPU (no memset, no
    copy), so a forward + backward is two launches. float16 backward sums into a float32 scratch
    the kernel zeroes itself."""
    params = draw(family, 256, 28, 28, seed=13).to("cuda")

    def gpu_work(fn):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]

    for dtype in (torch.float32, torch.float16):
        x = torch.randn(256, 3, 28, 28, device="cuda", dtype=dtype, requires_grad=True)
        out = dsa(x, params)
        torch.autograd.grad(out, x, torch.ones_like(out))  # warm-up
        g = torch.ones_like(out)
        torch.cuda.synchronize()
        forward = gpu_work(lambda: dsa(x.detach(), params))
        assert len(forward) == 1, (dtype, forward)
        out = dsa(x, params)
        backward = gpu_work(lambda: torch.autograd.grad(out, x, g))
        assert len(backward) == 1, (dtype, backward)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("mode", ["S", "M"])
def test_cuda_sampling_op_matches_eager_sampler_and_launches_twice(mode):
    const = dsa_params._constants(torch.device("cuda", torch.cuda.current_device()), 28, 28,
                                  dsa_params.parse_strategy(DEFAULT_STRATEGY, mode), mode)
    gen = torch.Generator(device="cuda")
    ints, floats = torch.ops.medistill.dsa_sample.default(const.offset, const.span, const.token_bits, 4096,
                                                          mode == "S", gen.manual_seed(5))
    want_ints, want_floats = dsa_params.sample_eager(const, 4096, mode, gen.manual_seed(5))
    torch.testing.assert_close(floats, want_floats, rtol=1e-6, atol=1e-6)
    assert (ints != want_ints).sum().item() <= 1  # floor() of a value one rounding away from an integer
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        torch.ops.medistill.dsa_sample.default(const.offset, const.span, const.token_bits, 256, mode == "S", gen)
        torch.cuda.synchronize()
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert len(kernels) <= 2, kernels


@requires_cuda
@needs_ops
def test_cuda_graph_capture_of_sampling_forward_and_backward():
    """A whole DSA step (draw from a registered generator, op, autograd backward) in one CUDA graph;
    each replay draws new params, and the outputs equal the eager op on the drawn params."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 3, 28, 28, device="cuda", requires_grad=True)
    g = torch.randn(64, 3, 28, 28, device="cuda")

    def step():
        params = sample_dsa_params(64, 28, 28, mode="S", generator=gen, device="cuda")
        out = dsa(x, params)
        (gx,) = torch.autograd.grad(out, x, g)
        return params, out, gx

    graph, (params, out, gx) = capture_cuda_graph(step, generator=gen, warmup=2)
    seen = set()
    for _ in range(4):
        graph.replay()
        torch.cuda.synchronize()
        seen.add(tuple(params.ints[0].tolist() + params.floats[0].tolist()))
        torch.testing.assert_close(out, dsa(x.detach(), params), rtol=0, atol=0)
        want = torch.ops.medistill.dsa_backward.default(g, params.ints, params.floats, False, False)
        torch.testing.assert_close(gx, want, **RESAMPLE_TOL[torch.float32])  # atomics: order varies
    assert len(seen) == 4  # every replay drew new params
