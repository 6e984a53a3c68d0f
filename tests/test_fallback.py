"""Without the compiled extension, medistill still imports, says why, and every op runs its reference."""
import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["medistill._C"] = None  # makes `import medistill._C` fail as a missing build would
import torch, medistill
from medistill import ops
info = medistill.build_info()
assert not medistill.has_ops() and not info["ops_loaded"], info
assert "medistill._C could not be loaded" in info["load_error"] and "pip install" in info["load_error"]
g = torch.Generator().manual_seed(0)
x = torch.randn(4, 3, 28, 28, requires_grad=True)
p = ops.sample_dsa_params(4, 28, 28, mode="M", generator=g)
y = ops.dsa(x, p)
assert torch.equal(y, ops.reference.dsa(x, p))
gr = [torch.randn(8, 3, 3, 3), torch.randn(8)]
gs = [t.clone().requires_grad_(True) for t in gr]
loss = ops.gradient_match_loss(gr, gs) + ops.trajectory_match_loss(torch.randn(5), torch.randn(5), torch.randn(5))
loss = loss + ops.distribution_match_loss(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]),
                                          torch.randn(3, 4, requires_grad=True), torch.tensor([0, 1, 2]), 3)
(y.sum() + loss).backward()
assert x.grad is not None
print("fallback ok")
"""


def test_import_and_ops_without_extension():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fallback ok" in out.stdout


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


# A build record as setup.py writes it, installed into sys.modules before medistill is imported.
FAKE_BUILD_CONFIG = r"""
import sys, types
cfg = types.ModuleType("medistill._build_config")
cfg.__dict__.update({fields})
sys.modules["medistill._build_config"] = cfg
"""

NO_EXTENSION = FAKE_BUILD_CONFIG.format(fields=repr(dict(
    EXTENSION_BUILT=False, EXTENSION_DECISION="installed with MEDISTILL_EXT=0, nothing compiled",
    TORCH_VERSION=None, TORCH_CUDA_VERSION=None, CUDA_KERNELS_COMPILED=False,
    CUDA_DECISION="MEDISTILL_EXT=0: no compiled extension", TORCH_CUDA_ARCH_LIST=None, CPU_SIMD=None, OPENMP=None,
))) + r"""
import io, contextlib, torch, medistill
from medistill import ops
info = medistill.build_info()
assert "medistill._C" not in sys.modules, "a MEDISTILL_EXT=0 install must not load a stale medistill._C"
assert not medistill.has_ops() and info["extension_built"] is False, info
assert "MEDISTILL_EXT=0" in info["load_error"] and "pure-PyTorch reference" in info["load_error"], info
x = torch.randn(2, 3, 8, 8)
p = ops.sample_dsa_params(2, 8, 8, mode="M", generator=torch.Generator().manual_seed(0))
assert torch.equal(ops.dsa(x, p), ops.reference.dsa(x, p))
from medistill import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    cli.main(["info"])
print(out.getvalue())
"""


def test_no_extension_install_says_why():
    """MEDISTILL_EXT=0 (setup.py records EXTENSION_BUILT = False): references only, and `medistill info` says why."""
    out = _run(NO_EXTENSION)
    assert out.returncode == 0, out.stderr
    assert "MEDISTILL_EXT=0" in out.stdout, out.stdout  # `medistill info` prints build_info()'s reason


MISMATCH = FAKE_BUILD_CONFIG.format(fields=repr(dict(
    EXTENSION_BUILT=True, EXTENSION_DECISION="MEDISTILL_EXT=1", TORCH_VERSION="1.13.0+cpu", TORCH_CUDA_VERSION=None,
    CUDA_KERNELS_COMPILED=False, CUDA_DECISION="MEDISTILL_CUDA=0", TORCH_CUDA_ARCH_LIST=None,
))) + r"""
sys.modules["medistill._C"] = None  # the load fails, as an extension built for another torch does
import torch, medistill
err = medistill.build_info()["load_error"]
assert not medistill.has_ops()
assert f"Runtime: torch {torch.__version__}" in err and "built against: torch 1.13.0+cpu" in err, err
assert "differs from the runtime torch" in err and "pip install --no-build-isolation" in err, err
print("mismatch ok")
"""


def test_torch_mismatch_is_a_clear_error():
    """An extension built against another torch: the error names both versions and how to rebuild."""
    out = _run(MISMATCH)
    assert out.returncode == 0, out.stderr
    assert "mismatch ok" in out.stdout
