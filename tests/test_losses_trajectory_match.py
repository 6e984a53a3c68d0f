"""trajectory_match_loss: fused op vs the plain torch expression (values and gradients of all three
vectors), float64 gradcheck, opcheck, compile, bad input, CPU vs CUDA."""
import pytest
import torch

from medistill.ops import has_ops, reference, trajectory_match_loss
from tests.conftest import requires_cuda, tolerances

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")


def make(n, dtype=torch.float32, device="cpu", requires_grad=(True, False, False)):
    return [torch.randn(n, dtype=dtype, device=device, requires_grad=rg) for rg in requires_grad]


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 1000, 40_000, 318_000])
@pytest.mark.parametrize("requires_grad", [(True, False, False), (True, True, True)])
def test_matches_reference(dtype, n, requires_grad):
    torch.manual_seed(0)
    w = make(n, dtype, requires_grad=requires_grad)
    loss = trajectory_match_loss(*w)
    want = reference.trajectory_match_loss(*w)
    tol = tolerances(dtype)
    torch.testing.assert_close(loss, want, **tol)
    inputs = [t for t in w if t.requires_grad]
    seed = torch.randn((), dtype=dtype)
    for got, exp in zip(torch.autograd.grad(loss, inputs, seed), torch.autograd.grad(want, inputs, seed)):
        torch.testing.assert_close(got, exp, **tol)


@needs_ops
def test_definition_by_hand():
    s, t, w0 = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), torch.tensor([4.0, 4.0])
    torch.testing.assert_close(trajectory_match_loss(s, t, w0), torch.tensor(4.0 / 25.0))


@needs_ops
def test_gradcheck_float64():
    torch.manual_seed(1)
    w = make(17, torch.float64, requires_grad=(True, True, True))
    assert torch.autograd.gradcheck(trajectory_match_loss, tuple(w))


@needs_ops
def test_opcheck():
    torch.manual_seed(2)
    w = make(50, requires_grad=(False, False, False))
    op = torch.ops.medistill.trajectory_match.default
    torch.library.opcheck(op, tuple(w))
    torch.library.opcheck(op, (w[0].requires_grad_(True), w[1], w[2]))
    _, stats = op(*[t.detach() for t in w])
    for mask in ([True, False, False], [True, True, True], [False, True, True]):
        torch.library.opcheck(
            torch.ops.medistill.trajectory_match_backward.default,
            (torch.tensor(0.7), *[t.detach() for t in w], stats, mask),
        )


@needs_ops
def test_compile_fullgraph():
    torch.manual_seed(3)
    w = make(100, requires_grad=(False, False, False))
    compiled = torch.compile(lambda a, b, c: trajectory_match_loss(a, b, c) + 1, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*w), reference.trajectory_match_loss(*w) + 1)


@needs_ops
def test_bad_input_names_problem():
    s, t, w0 = make(10, requires_grad=(False, False, False))
    with pytest.raises(ValueError, match="flat vectors of one length"):
        trajectory_match_loss(s, t[:9], w0)
    with pytest.raises(ValueError, match="flat vectors of one length"):
        trajectory_match_loss(s.view(2, 5), t.view(2, 5), w0.view(2, 5))
    with pytest.raises(ValueError, match="one floating dtype"):
        trajectory_match_loss(s, t.double(), w0)
    op = torch.ops.medistill.trajectory_match
    with pytest.raises(RuntimeError, match="flat vectors of one length"):
        op(s, t[:3], w0)
    with pytest.raises(RuntimeError, match="floating-point"):
        op(s.long(), t.long(), w0.long())


@requires_cuda
@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    torch.manual_seed(4)
    for n in (5, 318_000):
        w = make(n, requires_grad=(False, False, False))
        w_c = [t.cuda().to(dtype).requires_grad_(True) for t in w]
        w_r = [t.detach().float().cpu().requires_grad_(True) for t in w_c]
        loss_c, loss_r = trajectory_match_loss(*w_c), trajectory_match_loss(*w_r)
        tol = tolerances(dtype)
        torch.testing.assert_close(loss_c.float().cpu(), loss_r, **tol)
        for gc, gr in zip(torch.autograd.grad(loss_c, w_c), torch.autograd.grad(loss_r, w_r)):
            torch.testing.assert_close(gc.float().cpu(), gr, **tol)
