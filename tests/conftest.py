"""Shared test fixtures: RNG state restored around every test, real MedMNIST data located once."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "medmnist"


def pytest_configure(config):
    # Default MEDISTILL_DATA to the bundled real files beside the repository.
    if not os.environ.get("MEDISTILL_DATA") and SHARED_DATA.is_dir():
        os.environ["MEDISTILL_DATA"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def restore_rng_state():
    """Tests may seed torch's global RNG; put it back so test order never matters."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("MEDISTILL_DATA", SHARED_DATA))
    if not (root / "breastmnist.npz").exists():
        pytest.fail(f"real MedMNIST files not found in {root}: set MEDISTILL_DATA to the folder with breastmnist.npz")
    return root


@pytest.fixture(scope="module")
def breast(data_root):
    """Real BreastMNIST (1×28×28, 2 classes), loaded once per test module."""
    from medistill.data import load_medmnist

    return load_medmnist("breastmnist", root=data_root)


@pytest.fixture(scope="module")
def retina(data_root):
    """Real RetinaMNIST (3×28×28, 5 classes), loaded once per test module."""
    from medistill.data import load_medmnist

    return load_medmnist("retinamnist", root=data_root)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tolerances(dtype: torch.dtype) -> dict:
    """atol/rtol by dtype for kernel-vs-reference comparisons."""
    return {
        torch.float64: dict(atol=1e-10, rtol=1e-8),
        torch.float32: dict(atol=1e-5, rtol=1e-4),
        torch.float16: dict(atol=5e-3, rtol=5e-3),
        torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
    }[dtype]
