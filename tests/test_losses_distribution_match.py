"""distribution_match_loss: fused op vs the per-class reference loop (values and gradients), empty
classes, label checks, float64 gradcheck, opcheck, compile, the MMD variant, CPU vs CUDA."""
import pytest
import torch

from medistill.ops import distribution_match_loss, has_ops, reference
from tests.conftest import requires_cuda, tolerances

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")


def make(n_real, n_syn, dim, classes, dtype=torch.float32, device="cpu", requires_grad=True):
    emb_real = torch.randn(n_real, dim, dtype=dtype, device=device, requires_grad=requires_grad)
    emb_syn = torch.randn(n_syn, dim, dtype=dtype, device=device, requires_grad=requires_grad)
    y_real = torch.randint(0, classes, (n_real,), device=device)
    y_syn = torch.arange(n_syn, device=device) % classes  # every class present on the synthetic side
    return emb_real, y_real, emb_syn, y_syn


def check_against_reference(emb_real, y_real, emb_syn, y_syn, classes, dtype, **kw):
    loss = distribution_match_loss(emb_real, y_real, emb_syn, y_syn, classes, **kw)
    want = reference.distribution_match_loss(emb_real, y_real, emb_syn, y_syn, classes, **kw)
    tol = tolerances(dtype)
    torch.testing.assert_close(loss, want, **tol)
    seed = torch.randn((), dtype=dtype)
    got = torch.autograd.grad(loss, (emb_real, emb_syn), seed)
    exp = torch.autograd.grad(want, (emb_real, emb_syn), seed)
    for g, e in zip(got, exp):
        torch.testing.assert_close(g, e, **tol)
    return loss


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_real,n_syn,dim,classes", [(64, 10, 2048, 2), (300, 50, 128, 11), (40, 20, 7, 10), (1, 1, 1, 1)])
def test_matches_per_class_loop(dtype, n_real, n_syn, dim, classes):
    torch.manual_seed(0)
    check_against_reference(*make(n_real, n_syn, dim, classes, dtype), classes, dtype)


@needs_ops
def test_definition_by_hand():
    emb_real = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    y_real = torch.tensor([0, 0, 1])
    emb_syn = torch.tensor([[0.0, 0.0], [4.0, 4.0]])
    y_syn = torch.tensor([0, 1])
    # class 0: mean real (2, 1) vs (0, 0) -> 5; class 1: (5, 5) vs (4, 4) -> 2
    got = distribution_match_loss(emb_real, y_real, emb_syn, y_syn, 2)
    torch.testing.assert_close(got, torch.tensor(7.0))


@needs_ops
def test_empty_classes_are_skipped_not_nan():
    torch.manual_seed(1)
    emb_real, _, emb_syn, _ = make(12, 6, 16, 5, torch.float64)
    y_real = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])  # class 3 and 4: no real rows
    y_syn = torch.tensor([0, 1, 3, 3, 0, 1])  # class 2: no synthetic rows; class 4: none at all
    check_against_reference(emb_real, y_real, emb_syn, y_syn, 5, torch.float64)
    loss = distribution_match_loss(emb_real, y_real, emb_syn, y_syn, 5)
    assert torch.isfinite(loss)
    g_real, g_syn = torch.autograd.grad(loss, (emb_real, emb_syn))
    assert torch.all(g_real[y_real == 2] == 0) and torch.all(g_syn[y_syn == 3] == 0)
    assert g_real[y_real == 0].abs().sum() > 0
    # only classes 0 and 1 count
    keep_r, keep_s = y_real < 2, y_syn < 2
    only = reference.distribution_match_loss(emb_real[keep_r], y_real[keep_r], emb_syn[keep_s], y_syn[keep_s], 2)
    torch.testing.assert_close(loss, only)
    # no rows at all: 0, not NaN
    none = distribution_match_loss(emb_real[:0], y_real[:0], emb_syn, y_syn, 5)
    assert none.item() == 0.0


@needs_ops
def test_gradcheck_float64():
    torch.manual_seed(2)
    emb_real, y_real, emb_syn, y_syn = make(9, 4, 3, 3, torch.float64)
    assert torch.autograd.gradcheck(
        lambda r, s: distribution_match_loss(r, y_real, s, y_syn, 3), (emb_real, emb_syn)
    )
    assert torch.autograd.gradcheck(
        lambda r, s: distribution_match_loss(r, y_real, s, y_syn, 3, kernel="mmd", bandwidths=[1.0, 3.0]),
        (emb_real, emb_syn),
    )


@needs_ops
def test_opcheck():
    torch.manual_seed(3)
    emb_real, y_real, emb_syn, y_syn = make(20, 6, 5, 3, requires_grad=False)
    op = torch.ops.medistill.distribution_match.default
    torch.library.opcheck(op, (emb_real, y_real, emb_syn, y_syn, 3))
    torch.library.opcheck(op, (emb_real.requires_grad_(True), y_real, emb_syn.requires_grad_(True), y_syn, 3))
    _, diff, counts = op(emb_real, y_real, emb_syn, y_syn, 3)
    for y, side in ((y_real, 0), (y_syn, 1)):
        torch.library.opcheck(
            torch.ops.medistill.distribution_match_backward.default, (torch.tensor(1.5), diff, counts, y, side)
        )


@needs_ops
def test_compile_fullgraph():
    torch.manual_seed(4)
    emb_real, y_real, emb_syn, y_syn = make(30, 10, 8, 5, requires_grad=False)
    compiled = torch.compile(
        lambda r, s: distribution_match_loss(r, y_real, s, y_syn, 5) * 2, fullgraph=True, backend="aot_eager"
    )
    want = reference.distribution_match_loss(emb_real, y_real, emb_syn, y_syn, 5) * 2
    torch.testing.assert_close(compiled(emb_real, emb_syn), want)


@needs_ops
@pytest.mark.parametrize("bandwidths", [None, [1.0, 4.0, 16.0]])
def test_mmd_matches_per_class_loop(bandwidths):
    torch.manual_seed(5)
    emb_real, y_real, emb_syn, y_syn = make(50, 12, 10, 4, torch.float64)
    y_syn[y_syn == 3] = 2  # class 3: no synthetic rows, skipped
    loss = check_against_reference(emb_real, y_real, emb_syn, y_syn, 4, torch.float64, kernel="mmd",
                                   bandwidths=bandwidths)
    assert loss > 0
    same = distribution_match_loss(emb_real, y_real, emb_real[:12].detach(), y_real[:12], 4, kernel="mmd")
    assert torch.isfinite(same)


@needs_ops
def test_bad_input_names_problem():
    emb_real, y_real, emb_syn, y_syn = make(10, 4, 6, 3, requires_grad=False)
    with pytest.raises(RuntimeError, match=r"y_real\[\d+\] = 7 is out of range for num_classes = 3"):
        distribution_match_loss(emb_real, torch.full((10,), 7), emb_syn, y_syn, 3)
    with pytest.raises(RuntimeError, match="out of range"):
        distribution_match_loss(emb_real, y_real, emb_syn, torch.tensor([0, 1, -1, 2]), 3)
    with pytest.raises(ValueError, match="out of range"):
        distribution_match_loss(emb_real, torch.full((10,), 3), emb_syn, y_syn, 3, kernel="mmd")
    with pytest.raises(ValueError, match="differ"):
        distribution_match_loss(emb_real, y_real, emb_syn[:, :5], y_syn, 3)
    with pytest.raises(ValueError, match="int64 labels of shape"):
        distribution_match_loss(emb_real, y_real.float(), emb_syn, y_syn, 3)
    with pytest.raises(ValueError, match="int64 labels of shape"):
        distribution_match_loss(emb_real, y_real[:5], emb_syn, y_syn, 3)
    with pytest.raises(ValueError, match="kernel must be"):
        distribution_match_loss(emb_real, y_real, emb_syn, y_syn, 3, kernel="gauss")
    with pytest.raises(ValueError, match="num_classes"):
        distribution_match_loss(emb_real, y_real, emb_syn, y_syn, 0)
    op = torch.ops.medistill.distribution_match
    with pytest.raises(RuntimeError, match="labels for 10 rows"):
        op(emb_real, y_real[:4], emb_syn, y_syn, 3)
    with pytest.raises(RuntimeError, match="differ in embedding size"):
        op(emb_real, y_real, emb_syn[:, :2], y_syn, 3)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    torch.manual_seed(6)
    for n_real, n_syn, dim, classes in ((2560, 100, 2048, 10), (37, 5, 300, 11)):
        emb_real, y_real, emb_syn, y_syn = make(n_real, n_syn, dim, classes, requires_grad=False)
        y_syn[y_syn == 1] = 0  # class 1 skipped
        r_c = emb_real.cuda().to(dtype).requires_grad_(True)
        s_c = emb_syn.cuda().to(dtype).requires_grad_(True)
        r = r_c.detach().float().cpu().requires_grad_(True)
        s = s_c.detach().float().cpu().requires_grad_(True)
        loss_c = distribution_match_loss(r_c, y_real.cuda(), s_c, y_syn.cuda(), classes)
        loss = distribution_match_loss(r, y_real, s, y_syn, classes)
        tol = tolerances(dtype)
        torch.testing.assert_close(loss_c.float().cpu(), loss, **tol)
        for gc, g in zip(torch.autograd.grad(loss_c, (r_c, s_c)), torch.autograd.grad(loss, (r, s))):
            torch.testing.assert_close(gc.float().cpu(), g, **tol)
