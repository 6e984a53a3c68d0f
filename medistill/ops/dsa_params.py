"""Parameters of differentiable Siamese augmentation (DSA): the draw, apart from the kernel.

:func:`sample_dsa_params` draws everything one call of :func:`medistill.ops.dsa` needs from an
explicit ``torch.Generator`` into two small tensors on the target device, with no host
synchronisation; the op itself is a pure function of (x, params). Distributions follow the
published DSA code (DatasetCondensation ``ParamDiffAug`` defaults):

=========  ==================================================================================
family     parameters per sample
=========  ==================================================================================
color      brightness ``u - 0.5``; saturation factor ``2u``; contrast factor ``u + 0.5``
crop       integer shifts (rows, cols) in ``[-s, s]``, ``s = int(0.125 * size + 0.5)``
cutout     centre (row, col) in ``[0, size - k % 2]``, side ``k = int(0.5 * size + 0.5)``
flip       mirror the columns when ``u < 0.5``
scale      ``sx, sy ~ U(1/1.2, 1.2)`` (theta = diag(sx, sy))
rotate     angle ``~ U(-15, 15)`` degrees (theta = [[cos, -sin], [sin, cos]])
=========  ==================================================================================

Mode ``'S'`` picks ONE family of the strategy uniformly at random for the whole call; mode
``'M'`` applies every family of the strategy, in the order ``color_crop_cutout_flip_scale_rotate``.
Integer draws are ``floor(u * n)`` of the same float32 uniforms (uniform up to ~1e-6).
"""
from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import torch

from ._extension import use_kernel

#: Families in the order mode 'M' applies them, with their bit in ``DSAParams.families``.
FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
FAMILY_BITS = {name: 1 << k for k, name in enumerate(FAMILIES)}
DEFAULT_STRATEGY = "_".join(FAMILIES)
MODES = ("S", "M")

# Column layout, mirrored by csrc/common/dsa_math.h.
INT_COLUMNS = ("families", "crop_h", "crop_w", "cutout_h", "cutout_w", "flip")
FLOAT_COLUMNS = ("brightness", "saturation", "contrast", "scale_w", "scale_h", "angle")

SCALE_RATIO = 1.2
ROTATE_DEGREES = 15.0
CROP_RATIO = 0.125
CUTOUT_RATIO = 0.5
FLIP_PROBABILITY = 0.5


class DSAParams(NamedTuple):
    """One draw of DSA parameters: P rows of per-sample params (P == 1 for a Siamese draw).

    ints:   (P, 6) int32, columns ``INT_COLUMNS``: families bitmask (``FAMILY_BITS``), crop shift
            (rows, cols), cutout centre (row, col), flip (nonzero: mirror the columns).
    floats: (P, 6) float32, columns ``FLOAT_COLUMNS``: brightness offset, saturation factor,
            contrast factor, scale (sx for columns, sy for rows), rotation angle in radians
            (unit column stride; any row stride).
    height, width: the image size the draw was made for (crop range and cutout size depend on it).
    siamese: every sample uses row 0; the draw applies to a batch of any size.
    """

    ints: torch.Tensor
    floats: torch.Tensor
    height: int
    width: int
    siamese: bool

    @property
    def batch_size(self) -> int:
        """Rows of parameters (1 for a Siamese draw)."""
        return self.ints.shape[0]

    @property
    def families(self) -> torch.Tensor:
        """(P,) int32 bitmask of the families each sample gets."""
        return self.ints[:, 0]

    @property
    def crop(self) -> torch.Tensor:
        """(P, 2) int32 shifts (rows, cols): out[i, j] = in[i + dy, j + dx], zero outside."""
        return self.ints[:, 1:3]

    @property
    def cutout(self) -> torch.Tensor:
        """(P, 2) int32 cutout centres (row, col)."""
        return self.ints[:, 3:5]

    @property
    def flip(self) -> torch.Tensor:
        """(P,) bool: mirror the columns."""
        return self.ints[:, 5] != 0

    @property
    def color(self) -> torch.Tensor:
        """(P, 3) float32: brightness offset, saturation factor, contrast factor."""
        return self.floats[:, 0:3]

    @property
    def scale(self) -> torch.Tensor:
        """(P, 2) float32: sx (columns), sy (rows)."""
        return self.floats[:, 3:5]

    @property
    def angle(self) -> torch.Tensor:
        """(P,) float32 rotation angles in radians."""
        return self.floats[:, 5]

    def expand(self, batch_size: int) -> "DSAParams":
        """The params for a batch of ``batch_size``: a Siamese draw broadcast to that many rows
        (views, no copy); a non-Siamese draw only to its own batch size."""
        if self.batch_size == batch_size:
            return self
        if not self.siamese:
            raise ValueError(
                f"DSAParams: a non-Siamese draw for batch size {self.batch_size} cannot serve batch size {batch_size}"
            )
        return self._replace(ints=self.ints.expand(batch_size, -1), floats=self.floats.expand(batch_size, -1))

    def to(self, device) -> "DSAParams":
        """The same draw on another device."""
        return self._replace(ints=self.ints.to(device), floats=self.floats.to(device))


def parse_strategy(strategy: str, mode: str = "S") -> tuple[str, ...]:
    """Validated family tokens of an underscore-separated strategy ('' or 'none': no families)."""
    if not isinstance(strategy, str):
        raise TypeError(f"DSA: strategy must be a string like {DEFAULT_STRATEGY!r}, got {type(strategy).__name__}")
    return _parse_strategy(strategy, mode)


@functools.lru_cache(maxsize=256)
def _parse_strategy(strategy: str, mode: str) -> tuple[str, ...]:
    if mode not in MODES:
        raise ValueError(f"DSA: unknown mode {mode!r}; expected 'S' (one family per call) or 'M' (all, in order)")
    if strategy.strip().lower() in ("", "none"):
        return ()
    tokens = tuple(strategy.split("_"))
    for token in tokens:
        if token not in FAMILY_BITS:
            raise ValueError(
                f"DSA: unknown strategy token {token!r} in {strategy!r}; known tokens: {', '.join(FAMILIES)}"
            )
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"DSA: strategy {strategy!r} repeats a token")
    if mode == "M" and list(tokens) != sorted(tokens, key=FAMILIES.index):
        raise ValueError(
            f"DSA: mode 'M' applies families in the order {DEFAULT_STRATEGY}; strategy {strategy!r} is out of order"
        )
    return tokens


def check_dsa_input(x: torch.Tensor, params: DSAParams, op: str = "dsa") -> None:
    """Raise a clear error when x (B, C, H, W) and params do not fit together."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if not isinstance(params, DSAParams):
        raise TypeError(f"{op}: params must be DSAParams (from sample_dsa_params), got {type(params).__name__}")
    if (x.shape[2], x.shape[3]) != (params.height, params.width):
        raise ValueError(
            f"{op}: params were drawn for {params.height}x{params.width} images, x is {x.shape[2]}x{x.shape[3]}"
        )
    if not params.siamese and params.batch_size != x.shape[0]:
        raise ValueError(
            f"{op}: params were drawn for batch size {params.batch_size} but x has batch size {x.shape[0]} "
            "(only a Siamese draw applies to a batch of any size)"
        )
    if params.ints.device != x.device or params.floats.device != x.device:
        raise ValueError(f"{op}: params are on {params.ints.device} but x is on {x.device}")


class _Constants(NamedTuple):
    offset: torch.Tensor  # (12,) float32: v = offset + u * span
    span: torch.Tensor
    token_bits: torch.Tensor  # (n_tokens,) int32 family bit of each strategy token


@functools.lru_cache(maxsize=64)
def _constants(device: torch.device, height: int, width: int, tokens: tuple[str, ...], mode: str) -> _Constants:
    """Per-(device, size, strategy, mode) constants, made once (the only host-to-device copies).

    Row v = offset + u * span holds the float params and, floored, every integer column: the
    family index (mode 'S') or the constant bitmask (mode 'M', span 0), crop shifts
    ``randint(-s, s + 1)``, cutout centres ``randint(0, size + 1 - k % 2)``, and flip
    ``floor(u - 0.5)``, -1 (mirror) exactly when u < 0.5. Integer spans n are shrunk by a factor
    (1 - 2**-20) so that float32 rounding of u * n can never reach n (a 1e-6 relative bias).
    """
    crop_h, crop_w = int(height * CROP_RATIO + 0.5), int(width * CROP_RATIO + 0.5)
    cut_h, cut_w = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    n_cut_h, n_cut_w = height + 1 - cut_h % 2, width + 1 - cut_w % 2  # published randint upper bounds
    bits = [FAMILY_BITS[t] for t in tokens] or [0]
    fam_offset, fam_span = (float(sum(bits)), 0.0) if mode == "M" else (0.0, float(len(bits)))
    lo, hi = 1.0 / SCALE_RATIO, SCALE_RATIO
    rad = ROTATE_DEGREES / 180.0 * torch.pi
    # columns: families, crop h, crop w, cutout h, cutout w, flip | the float columns
    offset = [fam_offset, -crop_h, -crop_w, 0.0, 0.0, -FLIP_PROBABILITY, -0.5, 0.0, 0.5, lo, lo, -rad]
    span = [fam_span, 2 * crop_h + 1, 2 * crop_w + 1, n_cut_h, n_cut_w, 1.0, 1.0, 2.0, 1.0, hi - lo, hi - lo, 2 * rad]
    shrink = 1.0 - 2.0**-20
    span = [value * shrink for value in span[:5]] + span[5:]
    f32 = dict(dtype=torch.float32, device=device)
    return _Constants(
        torch.tensor(offset, **f32),
        torch.tensor(span, **f32),
        torch.tensor(bits, dtype=torch.int32, device=device),
    )


def sample_dsa_params(
    batch_size: int,
    height: int,
    width: int,
    *,
    strategy: str = DEFAULT_STRATEGY,
    mode: str = "S",
    siamese: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> DSAParams:
    """Draw the DSA parameters of one call for a batch of ``batch_size`` images of ``height x width``.

    Returns :class:`DSAParams` on ``device`` with ``batch_size`` rows, or one row when ``siamese``
    (every sample gets the same parameters; the draw then applies to batches of any size, e.g. the
    real batch of 256 and the synthetic batch of IPC images).

    Randomness comes only from ``generator`` (``None``: torch's default generator of the device that
    samples). Sampling runs on the generator's device: a CUDA generator samples on the GPU with no
    host synchronisation (CUDA-graph capturable once the per-size constants are cached by a first
    call); a CPU generator with a CUDA ``device`` samples on the CPU and copies non-blocking.
    """
    device = _target_device(device)
    sample_device = generator.device if generator is not None else device
    siamese = bool(siamese)
    try:  # validated once per distinct call signature (typed: 28.0 is not 28)
        draw = _draw_plan(batch_size, height, width, strategy, mode, siamese, device, sample_device)
    except TypeError:  # an unhashable argument: validate uncached, for the error message
        draw = _draw_plan.__wrapped__(batch_size, height, width, strategy, mode, siamese, device, sample_device)
    const, rows, height, width, op = draw
    if op is not None:  # one op: draw + map (CPU: one loop; CUDA: rand + one kernel)
        ints, floats = op(const.offset, const.span, const.token_bits, rows, mode == "S", generator)
    else:
        ints, floats = sample_eager(const, rows, mode, generator)
    if sample_device != device:
        ints, floats = ints.to(device, non_blocking=True), floats.to(device, non_blocking=True)
    return DSAParams(ints, floats, height, width, siamese)


_PLAIN_DEVICES: dict = {}  # "cpu", torch.device("cpu"), ... -> torch.device, for every device but bare "cuda"


def _target_device(device) -> torch.device:
    """``device`` as a torch.device; a bare "cuda" means the current CUDA device (read per call)."""
    resolved = _PLAIN_DEVICES.get(device)
    if resolved is not None:
        return resolved
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if len(_PLAIN_DEVICES) < 64:
        _PLAIN_DEVICES[device] = resolved
    return resolved


@functools.lru_cache(maxsize=256, typed=True)
def _draw_plan(batch_size, height, width, strategy, mode, siamese, device, sample_device):
    """Validated arguments of one call signature -> (constants, rows, height, width, the draw op or None)."""
    tokens = parse_strategy(strategy, mode)
    try:
        batch_size, height, width = operator.index(batch_size), operator.index(height), operator.index(width)
    except TypeError:
        raise ValueError(f"sample_dsa_params: sizes must be ints, got {batch_size!r}, {height!r}, {width!r}") from None
    if batch_size < 0:
        raise ValueError(f"sample_dsa_params: batch_size must be non-negative, got {batch_size}")
    if height < 1 or width < 1:
        raise ValueError(f"sample_dsa_params: height and width must be positive ints, got {height}, {width}")
    if sample_device.type != device.type and sample_device.type != "cpu":
        raise ValueError(f"sample_dsa_params: a {sample_device} generator cannot draw params for {device}")
    const = _constants(sample_device, height, width, tokens, mode)
    op = torch.ops.medistill.dsa_sample.default if use_kernel(const.offset) else None
    return const, (1 if siamese else batch_size), height, width, op


def sample_eager(const: _Constants, rows: int, mode: str, generator: torch.Generator | None):
    """The draw in eager torch ops (the fallback without the extension, and the op's test oracle):
    returns ints (rows, 6) int32 and floats (rows, 6) float32 on the constants' device."""
    u = torch.rand((rows, 12), generator=generator, device=const.offset.device)
    v = torch.addcmul(const.offset, u, const.span)
    ints = v.narrow(1, 0, 6).floor().to(torch.int32)
    if mode == "S" and rows > 0:  # row 0's draw picks the one family of the whole call
        ints.select(1, 0).copy_(const.token_bits.index_select(0, ints[0, :1]))
    return ints, v.narrow(1, 6, 6)  # floats: a view (row stride 12); the kernels take any row stride
