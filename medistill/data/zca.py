"""ZCA whitening of normalised images, fitted on a training split (the MedMNIST study's MTT preprocessing).

Fit on X (N, C, H, W) flattened to (N, D): mean μ (D,), covariance Σ = (X − μ)ᵀ(X − μ) / (N − 1),
eigendecomposition Σ = U diag(S) Uᵀ in float64, transform W = U diag(1/√(S + eps)) Uᵀ (symmetric) and
its inverse U diag(√(S + eps)) Uᵀ. ``apply(x) = (x − μ) W`` and ``invert(y) = y W⁻¹ + μ``, reshaped back.

This is kornia's ``ZCAWhitening(eps=0.1, compute_inv=True)`` as the published MTT code calls it: its
default ``unbiased=True`` divides the covariance by N − 1 (the docstring says "biased" but the code
divides by N − 1), so medistill does too; eps 0.1 is MTT's. kornia takes an SVD of Σ in float32, here
an ``eigh`` in float64 (Σ is symmetric positive semi-definite; tiny negative eigenvalues from rounding
are clamped to 0), so W agrees up to float32 rounding. W does not depend on the eigenvector signs or on
the basis chosen inside a repeated eigenvalue (e.g. the null space when N − 1 < D, which W scales by
1/√eps), so the fit is a deterministic function of the images.

Stored state: ``mean`` (D,) and ``matrix`` W (D, D) as float32, and ``eps``: 4·D² bytes, about 2.4 MB
at 1×28×28 (D = 784) and 22 MB at 3×28×28 (D = 2352). The inverse is recomputed from W in float64.

Size limit: D ≤ :data:`MAX_DIM` = 4,096 (1×64×64, 3×32×32 and every 28 px MedMNIST dataset). The
matrix is dense, so it grows with the square of the image's pixel count and the fit with its cube: at
3×64×64 (D = 12,288) W alone is 576 MiB in every saved set and bank, at 3×224×224 (D = 150,528) it
would be 84 GiB and its float64 covariance 169 GiB. Larger images are refused with a
:class:`~.errors.DataError` before any work (:func:`check_zca_size`); distil those without ZCA, or at
28/32 px with it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic_io import atomic_torch_save
from .errors import DataError

DEFAULT_EPS = 0.1
FORMAT = "medistill.ZCA"
MAX_DIM = 4096  # D = C·H·W; W is D×D (64 MiB in float32 at the limit)


def check_zca_size(image_shape) -> None:
    """DataError when images of ``image_shape`` (C, H, W) are too large for a dense ZCA (D > MAX_DIM)."""
    c, h, w = (int(s) for s in image_shape)
    d = c * h * w
    if d > MAX_DIM:
        raise DataError(
            f"ZCA whitening needs a dense D×D matrix, D = C·H·W = {c}×{h}×{w} = {d:,}: {4 * d * d / 2**30:.1f} GiB in "
            f"float32 (its float64 covariance twice that) and an O(D³) eigendecomposition; medistill fits ZCA only up "
            f"to D = {MAX_DIM:,} (1×64×64, 3×32×32, every 28 px MedMNIST dataset). Distil these images without ZCA "
            "(zca=false, no --zca), or with ZCA at --size 28")


@dataclass
class ZCA:
    """A fitted ZCA transform of images shaped ``image_shape`` (C, H, W); D = C·H·W.

    mean: (D,) float32; matrix: (D, D) float32, symmetric; eps: the regulariser added to the eigenvalues.
    """

    mean: torch.Tensor
    matrix: torch.Tensor
    eps: float
    image_shape: tuple[int, int, int]

    def __post_init__(self):
        d = 1
        for s in self.image_shape:
            d *= int(s)
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.mean = self.mean.detach().to(torch.float32).reshape(-1).contiguous()
        self.matrix = self.matrix.detach().to(torch.float32).contiguous()
        if self.mean.shape != (d,) or self.matrix.shape != (d, d):
            raise DataError(f"ZCA state does not fit images {self.image_shape}: mean {tuple(self.mean.shape)}, "
                            f"matrix {tuple(self.matrix.shape)}, expected ({d},) and ({d}, {d})")
        self._inverse: torch.Tensor | None = None

    @classmethod
    def fit(cls, images: torch.Tensor, eps: float = DEFAULT_EPS) -> "ZCA":
        """Fit on normalised training images (N, C, H, W), N ≥ 2."""
        if images.dim() != 4 or images.shape[0] < 2:
            raise DataError(f"ZCA is fitted on (N ≥ 2, C, H, W) images, got {tuple(images.shape)}")
        check_zca_size(images.shape[1:])
        if not eps > 0:
            raise ValueError(f"ZCA eps must be > 0, got {eps}")
        x = images.detach().cpu().to(torch.float64).flatten(1)
        mean = x.mean(0)
        centred = x - mean
        cov = centred.T @ centred / (x.shape[0] - 1)
        eigenvalues, vectors = torch.linalg.eigh(cov)
        scale = (eigenvalues.clamp_min(0) + eps).rsqrt()
        matrix = (vectors * scale) @ vectors.T
        return cls(mean.float(), matrix.float(), float(eps), tuple(images.shape[1:]))

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the float32 matrix and mean bytes (and the shape)."""
        h = hashlib.sha256()
        h.update(repr(self.image_shape).encode())
        h.update(self.matrix.numpy().tobytes())
        h.update(self.mean.numpy().tobytes())
        return h.hexdigest()[:16]

    def inverse_matrix(self) -> torch.Tensor:
        """W⁻¹ (D, D) float32, computed once in float64 from the stored W."""
        if self._inverse is None:
            self._inverse = torch.linalg.inv(self.matrix.to(torch.float64)).float()
        return self._inverse

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise DataError(f"this ZCA transform is for (N, {', '.join(map(str, self.image_shape))}) images, "
                            f"got {tuple(x.shape)}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten normalised images (N, C, H, W) → (N, C, H, W) float32 on x's device."""
        self._check(x)
        flat = x.to(torch.float32).flatten(1) - self.mean.to(x.device)
        return (flat @ self.matrix.to(x.device)).reshape(x.shape)

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """Whitened images (N, C, H, W) → normalised images (N, C, H, W) float32."""
        self._check(y)
        flat = y.to(torch.float32).flatten(1) @ self.inverse_matrix().to(y.device)
        return (flat + self.mean.to(y.device)).reshape(y.shape)

    def describe(self) -> dict:
        """JSON-able summary recorded in metadata: kind, eps, fingerprint, dimension, state size."""
        return {"kind": "zca", "eps": self.eps, "fingerprint": self.fingerprint, "dim": self.dim,
                "image_shape": list(self.image_shape), "state_bytes": 4 * (self.dim * self.dim + self.dim),
                "rule": "whitened = ((normalized.reshape(N, D) - mean) @ matrix).reshape(N, C, H, W)"}

    def state_dict(self) -> dict:
        """Tensors and plain values only (loads with ``torch.load(weights_only=True)``)."""
        return {"format": FORMAT, "mean": self.mean.clone(), "matrix": self.matrix.clone(), "eps": self.eps,
                "image_shape": list(self.image_shape), "fingerprint": self.fingerprint}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ZCA":
        """Inverse of :meth:`state_dict`; DataError when the recorded fingerprint does not match the tensors."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise DataError("not a medistill ZCA state (no 'format' marker)")
        zca = cls(torch.as_tensor(state["mean"]), torch.as_tensor(state["matrix"]), float(state["eps"]),
                  tuple(state["image_shape"]))
        recorded = state.get("fingerprint")
        if recorded and recorded != zca.fingerprint:
            raise DataError(f"ZCA state's fingerprint {zca.fingerprint} differs from the recorded {recorded}: "
                            "the transform was modified or corrupted")
        return zca

    def save(self, path) -> Path:
        """Write atomically to a ``.pt`` file; returns the path."""
        path = Path(path)
        atomic_torch_save(self.state_dict(), path)
        return path

    @classmethod
    def load(cls, path) -> "ZCA":
        path = Path(path)
        if not path.exists():
            raise DataError(f"no ZCA transform at {path}")
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def close_to(self, other: "ZCA", rtol: float = 1e-5) -> bool:
        """Same shape and eps, and mean/matrix equal up to ``rtol`` of their largest magnitude (a refit on
        another machine may differ in the last float32 bit)."""
        if self.image_shape != other.image_shape or self.eps != other.eps:
            return False
        tol_w = rtol * float(self.matrix.abs().max())
        tol_m = rtol * max(float(self.mean.abs().max()), 1.0)
        return (bool((self.matrix - other.matrix).abs().max() <= tol_w)
                and bool((self.mean - other.mean).abs().max() <= tol_m))


def whiten_dataset(dataset, zca: ZCA):
    """A copy of an :class:`~medistill.data.ImageDataset` with every split whitened by ``zca``
    (name, MD5, labels, mean/std unchanged; ``extra['zca']`` records the transform)."""
    return dataset.replace(train_images=zca.apply(dataset.train_images), val_images=zca.apply(dataset.val_images),
                           test_images=zca.apply(dataset.test_images), extra={**dataset.extra, "zca": zca.describe()})


_FITTED: dict[tuple, ZCA] = {}


def fit_zca(dataset, eps: float = DEFAULT_EPS) -> ZCA:
    """ZCA fitted on ``dataset``'s training split. Kept per (name, MD5, shape, eps) for the last few
    datasets with an MD5 (a fit costs seconds at D = 2352; experts and MTT fit the same one). Images over
    the size limit are refused before the split is touched (:func:`check_zca_size`)."""
    check_zca_size(dataset.image_shape)
    if dataset.md5 is None:
        return ZCA.fit(dataset.train_images, eps)
    key = (dataset.name, dataset.md5, (len(dataset.train_labels), *dataset.image_shape), float(eps))
    if key not in _FITTED:
        if len(_FITTED) >= 4:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = ZCA.fit(dataset.train_images, eps)
    return _FITTED[key]


__all__ = ["DEFAULT_EPS", "MAX_DIM", "ZCA", "check_zca_size", "fit_zca", "whiten_dataset"]
