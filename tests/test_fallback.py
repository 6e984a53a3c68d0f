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
