"""gradient_match_loss(_batched): fused op vs the per-layer reference loop (values and gradients),
float64 gradcheck, opcheck, compile, bad input, a DC outer step, CPU vs CUDA."""
import pytest
import torch

from medistill.ops import gradient_match_loss, gradient_match_loss_batched, has_ops, reference
from tests.conftest import requires_cuda, tolerances

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")
METRICS = ["ours", "mse", "cos"]


def convnet_shapes(channels: int, classes: int, width: int = 128):
    """Parameter shapes of ConvNet (depth 3, 28 px input padded to 32): 14 tensors, in order."""
    block = lambda cin: [(width, cin, 3, 3), (width,), (width,), (width,)]  # noqa: E731 conv w/b, norm w/b
    return block(channels) + block(width) + block(width) + [(classes, width * 16), (classes,)]


# 0-D, 1-D, 2-D, 3-D, 4-D, 5-D, empty, a row of one element, and tensors longer than one chunk.
RANDOM_SHAPES = [(), (7,), (5, 3), (4, 2, 3), (6, 3, 3, 3), (2, 3, 2, 2, 2), (0, 4), (3, 0), (9, 1), (3, 9000), (20000,)]


def make_grads(shapes, dtype=torch.float32, device="cpu", requires_grad=True, batch=None):
    lead = () if batch is None else (batch,)
    real = [torch.randn((*lead, *s), dtype=dtype, device=device, requires_grad=requires_grad) for s in shapes]
    syn = [torch.randn((*lead, *s), dtype=dtype, device=device, requires_grad=requires_grad) for s in shapes]
    return real, syn


def loss_and_grads(fn, real, syn, metric):
    loss = fn(real, syn, metric)
    seed = torch.randn_like(loss)
    inputs = [t for t in real + syn if t.requires_grad]
    grads = torch.autograd.grad(loss, inputs, seed, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]
    return loss, grads, seed


def assert_matches_reference(fn, ref_fn, real, syn, metric, dtype):
    loss, grads, seed = loss_and_grads(fn, real, syn, metric)
    want = ref_fn(real, syn, metric)
    inputs = [t for t in real + syn if t.requires_grad]
    want_grads = torch.autograd.grad(want, inputs, seed, allow_unused=True)
    tol = tolerances(dtype)
    torch.testing.assert_close(loss, want, **tol)
    for got, exp, t in zip(grads, want_grads, inputs):
        torch.testing.assert_close(got, torch.zeros_like(t) if exp is None else exp, **tol)


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("channels,classes", [(1, 2), (3, 11), (1, 9)])
def test_convnet_shapes_match_reference(metric, channels, classes):
    torch.manual_seed(0)
    real, syn = make_grads(convnet_shapes(channels, classes))
    assert_matches_reference(gradient_match_loss, reference.gradient_match_loss, real, syn, metric, torch.float32)


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_shapes_match_reference(metric, dtype):
    torch.manual_seed(1)
    real, syn = make_grads(RANDOM_SHAPES, dtype)
    assert_matches_reference(gradient_match_loss, reference.gradient_match_loss, real, syn, metric, dtype)


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_batched_over_classes_matches_per_class_loop(metric):
    torch.manual_seed(2)
    real, syn = make_grads(convnet_shapes(3, 10, width=32), batch=10)
    assert_matches_reference(
        gradient_match_loss_batched, reference.gradient_match_loss_batched, real, syn, metric, torch.float32
    )
    # and entry k is the single-class loss of class k
    out = gradient_match_loss_batched(real, syn, metric)
    for k in (0, 9):
        single = gradient_match_loss([g[k] for g in real], [g[k] for g in syn], metric)
        torch.testing.assert_close(out[k], single, **tolerances(torch.float32))


@needs_ops
def test_only_syn_requires_grad_and_noncontiguous():
    torch.manual_seed(3)
    shapes = [(6, 4, 3, 3), (6,), (5, 8)]
    real = [torch.randn(*s) for s in shapes]
    syn = [torch.randn(*reversed(s)).permute(*reversed(range(len(s)))).requires_grad_(True) for s in shapes]
    assert not syn[0].is_contiguous()
    for metric in METRICS:
        assert_matches_reference(gradient_match_loss, reference.gradient_match_loss, real, syn, metric, torch.float32)


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_zero_rows_give_no_nan(metric):
    real, syn = make_grads([(4, 3, 3, 3), (5, 6), (4,)], torch.float64)
    with torch.no_grad():
        real[0][0].zero_()  # a zero real row
        syn[0][1].zero_()  # a zero synthetic row
        real[1][2].zero_()
        syn[1][2].zero_()  # a row zero on both sides
    loss, grads, _ = loss_and_grads(gradient_match_loss, real, syn, metric)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    assert_matches_reference(gradient_match_loss, reference.gradient_match_loss, real, syn, metric, torch.float64)
    zero_real = [torch.zeros_like(g) for g in real]
    loss, grads, _ = loss_and_grads(gradient_match_loss, zero_real, syn, metric)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@needs_ops
def test_ours_definition_by_hand():
    # Two conv rows and one linear row; the bias contributes nothing.
    a = torch.tensor([[[[1.0]], [[0.0]]], [[[3.0]], [[4.0]]]])  # (2, 2, 1, 1): rows (1,0), (3,4)
    b = torch.tensor([[[[0.0]], [[2.0]]], [[[3.0]], [[4.0]]]])  # rows (0,2), (3,4)
    lin_a, lin_b = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]])
    bias = torch.tensor([5.0, -1.0])
    expected = (1 - 0 / (1 * 2 + 1e-6)) + (1 - 25 / (5 * 5 + 1e-6)) + (1 - 2 / (2 ** 0.5 * 2 + 1e-6))
    got = gradient_match_loss([a, lin_a, bias], [b, lin_b, -bias])
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-6, rtol=1e-6)


@needs_ops
def test_result_does_not_depend_on_thread_count():
    torch.manual_seed(4)
    real, syn = make_grads(convnet_shapes(1, 4), requires_grad=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [gradient_match_loss(real, syn, m) for m in METRICS]
        torch.set_num_threads(2)
        two = [gradient_match_loss(real, syn, m) for m in METRICS]
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(one, two):
        assert torch.equal(x, y)


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck_float64(metric):
    torch.manual_seed(5)
    shapes = [(3, 2, 2, 2), (3,), (2, 4), ()]
    real, syn = make_grads(shapes, torch.float64)
    n = len(shapes)
    assert torch.autograd.gradcheck(lambda *t: gradient_match_loss(list(t[:n]), list(t[n:]), metric), (*real, *syn))
    rb, sb = make_grads(shapes[:3], torch.float64, batch=2)
    assert torch.autograd.gradcheck(lambda *t: gradient_match_loss_batched(list(t[:3]), list(t[3:]), metric), (*rb, *sb))


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_registered_autograd_equals_eager_function(metric):
    # The wrappers use an autograd.Function in eager mode; direct op calls use register_autograd.
    torch.manual_seed(11)
    real, syn = make_grads([(4, 3, 3, 3), (4,), (3, 5), ()], torch.float64, batch=2)
    for batched in (True, False):
        r, s = ([t[0] for t in real], [t[0] for t in syn]) if not batched else (real, syn)
        wrapper = gradient_match_loss_batched if batched else gradient_match_loss
        loss_w = wrapper(r, s, metric)
        loss_o, _ = torch.ops.medistill.gradient_match(r, s, metric, batched)
        assert loss_w.grad_fn is not None and "GradientMatchFunction" in type(loss_w.grad_fn).__name__
        assert "medistill_gradient_match" in type(loss_o.grad_fn).__name__
        torch.testing.assert_close(loss_w, loss_o, rtol=0, atol=0)
        seed = torch.randn_like(loss_w)
        for gw, go in zip(torch.autograd.grad(loss_w, real + syn, seed, allow_unused=True),
                          torch.autograd.grad(loss_o, real + syn, seed, allow_unused=True)):
            torch.testing.assert_close(gw, go, rtol=0, atol=0)
    assert torch.autograd.gradcheck(
        lambda *t: torch.ops.medistill.gradient_match(list(t[:4]), list(t[4:]), metric, True)[0], (*real, *syn)
    )


@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_opcheck(metric):
    torch.manual_seed(6)
    real, syn = make_grads([(3, 4, 2), (3,), (2, 5)], batch=2, requires_grad=False)
    op = torch.ops.medistill.gradient_match.default
    backward = torch.ops.medistill.gradient_match_backward.default
    for batched in (True, False):
        torch.library.opcheck(op, (real, syn, metric, batched))
        syn_rg = [s.detach().requires_grad_(True) for s in syn]
        torch.library.opcheck(op, (real, syn_rg, metric, batched))
        _, stats = op(real, syn, metric, batched)
        grad = torch.randn(2) if batched else torch.randn(())
        for need_real, need_syn in ((True, True), (False, True)):
            torch.library.opcheck(backward, (grad, real, syn, stats, metric, batched, need_real, need_syn))


@needs_ops
def test_compile_fullgraph():
    torch.manual_seed(7)
    real, syn = make_grads([(4, 3, 3, 3), (4,), (2, 16)], requires_grad=False)
    fn = lambda r, s: gradient_match_loss(r, s) + gradient_match_loss(r, s, "cos")  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    want = reference.gradient_match_loss(real, syn) + reference.gradient_match_loss(real, syn, "cos")
    torch.testing.assert_close(compiled(real, syn), want)
    rb, sb = make_grads([(4, 3, 3, 3), (4,), (2, 16)], batch=3)
    compiled_b = torch.compile(lambda r, s: gradient_match_loss_batched(r, s).sum(), fullgraph=True, backend="aot_eager")
    got = compiled_b(rb, sb)
    torch.testing.assert_close(got, reference.gradient_match_loss_batched(rb, sb).sum())
    (g_got,) = torch.autograd.grad(got, sb[0])
    (g_want,) = torch.autograd.grad(reference.gradient_match_loss_batched(rb, sb).sum(), sb[0])
    torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize("kernel", [True, False])
def test_bad_input_names_problem_in_wrapper(kernel, monkeypatch):
    if not kernel:  # the reference path runs the same checks in Python
        monkeypatch.setattr("medistill.ops.gradient_match._kernel_serves", lambda syn: False)
    elif not has_ops():
        pytest.skip("medistill._C not built")
    errors = (ValueError, RuntimeError)  # Python checks raise ValueError, the op's checks RuntimeError
    real, syn = make_grads([(3, 4), (3,)], requires_grad=False)
    with pytest.raises(ValueError, match="grads_real has 2 tensors but grads_syn has 1"):
        gradient_match_loss(real, syn[:1])
    with pytest.raises(ValueError, match="metric must be one of"):
        gradient_match_loss(real, syn, "l2")
    with pytest.raises(ValueError, match="empty"):
        gradient_match_loss([], [])
    with pytest.raises(errors, match=r"grads_real\[0\] and grads_syn\[0\] differ in shape: \[?\(?3, 4"):
        gradient_match_loss(real, [syn[0].T, syn[1]])
    with pytest.raises(errors, match="share one dtype"):
        gradient_match_loss(real, [syn[0].double(), syn[1]])
    with pytest.raises(errors, match="leading class dim"):
        gradient_match_loss_batched([torch.randn(2, 3), torch.randn(3)], [torch.randn(2, 3), torch.randn(3)])


@needs_ops
def test_bad_input_names_problem_in_op():
    real, syn = make_grads([(3, 4), (3,)], requires_grad=False)
    op = torch.ops.medistill.gradient_match
    with pytest.raises(RuntimeError, match="same length"):
        op(real, syn[:1], "ours", False)
    with pytest.raises(RuntimeError, match="differ in shape"):
        op([real[0]], [real[0].T], "ours", False)
    with pytest.raises(RuntimeError, match="metric must be"):
        op(real, syn, "l1", False)
    with pytest.raises(RuntimeError, match="same leading class dim"):
        op([torch.randn(2, 3), torch.randn(3, 3)], [torch.randn(2, 3), torch.randn(3, 3)], "ours", True)
    with pytest.raises(RuntimeError, match="share one dtype"):
        op([real[0], real[1].double()], [syn[0], syn[1].double()], "ours", False)


def _small_convnet(channels: int, classes: int, width: int) -> torch.nn.Sequential:
    layers, cin = [], channels
    for i in range(3):
        layers += [torch.nn.Conv2d(cin, width, 3, padding=3 if i == 0 else 1), torch.nn.GroupNorm(width, width),
                   torch.nn.ReLU(), torch.nn.AvgPool2d(2)]
        cin = width
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(width * 16, classes))


def _dc_outer_step_image_grad(loss_fn, net, real_x, syn_x, classes, batched):
    """DC outer step: sum over classes of the matching loss; returns d loss / d synthetic images."""
    params = list(net.parameters())
    ce = torch.nn.CrossEntropyLoss()
    syn_x = syn_x.detach().requires_grad_(True)
    g_real, g_syn = [], []
    for c in range(classes):
        y_r = torch.full((real_x[c].shape[0],), c)
        y_s = torch.full((syn_x.shape[1],), c)
        g_real.append([g.detach() for g in torch.autograd.grad(ce(net(real_x[c]), y_r), params)])
        g_syn.append(list(torch.autograd.grad(ce(net(syn_x[c]), y_s), params, create_graph=True)))
    if batched:
        stack = lambda gs: [torch.stack([g[i] for g in gs]) for i in range(len(params))]  # noqa: E731
        loss = loss_fn(stack(g_real), stack(g_syn)).sum()
    else:
        loss = sum(loss_fn(g_real[c], g_syn[c]) for c in range(classes))
    (image_grad,) = torch.autograd.grad(loss, syn_x)
    return loss.detach(), image_grad


@needs_ops
@pytest.mark.parametrize("channels", [1, 3])
def test_dc_outer_step_through_op_equals_reference(channels):
    torch.manual_seed(8)
    classes, width = 2, 16
    net = _small_convnet(channels, classes, width).double()
    real_x = [torch.randn(8, channels, 28, 28, dtype=torch.float64) for _ in range(classes)]
    syn_x = torch.randn(classes, 2, channels, 28, 28, dtype=torch.float64)
    want_loss, want = _dc_outer_step_image_grad(reference.gradient_match_loss, net, real_x, syn_x, classes, False)
    got_loss, got = _dc_outer_step_image_grad(gradient_match_loss, net, real_x, syn_x, classes, False)
    b_loss, b_got = _dc_outer_step_image_grad(gradient_match_loss_batched, net, real_x, syn_x, classes, True)
    assert want.abs().max() > 0
    for loss, grad in ((got_loss, got), (b_loss, b_got)):
        torch.testing.assert_close(loss, want_loss, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(grad, want, atol=1e-9, rtol=1e-7)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(metric, dtype):
    torch.manual_seed(9)
    for batch, shapes in ((None, convnet_shapes(3, 10)), (10, convnet_shapes(1, 10, width=32)), (None, RANDOM_SHAPES)):
        real, syn = make_grads(shapes, torch.float32, batch=batch)
        real, syn = [t * 0.05 for t in real], [t * 0.05 for t in syn]  # keep float16 "mse" sums finite
        fn = gradient_match_loss if batch is None else gradient_match_loss_batched
        real_c = [t.detach().cuda().to(dtype).requires_grad_(True) for t in real]
        syn_c = [t.detach().cuda().to(dtype).requires_grad_(True) for t in syn]
        # CPU oracle on the same (rounded) values, in float32
        real_r = [t.detach().float().cpu().requires_grad_(True) for t in real_c]
        syn_r = [t.detach().float().cpu().requires_grad_(True) for t in syn_c]
        loss_c, grads_c, seed = loss_and_grads(fn, real_c, syn_c, metric)
        loss_r = fn(real_r, syn_r, metric)
        grads_r = torch.autograd.grad(loss_r, real_r + syn_r, seed.float().cpu())
        tol = tolerances(dtype)
        torch.testing.assert_close(loss_c.float().cpu(), loss_r, **tol)
        for gc, gr in zip(grads_c, grads_r):
            torch.testing.assert_close(gc.float().cpu(), gr, **tol)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_one_kernel_launch_each_way(metric):
    torch.manual_seed(10)
    for batch in (None, 10):
        real, syn = make_grads(convnet_shapes(3, 10), device="cuda", batch=batch)
        fn = gradient_match_loss if batch is None else gradient_match_loss_batched
        seed = torch.ones(() if batch is None else (batch,), device="cuda")
        torch.autograd.grad(fn(real, syn, metric), real + syn, seed)  # warm-up
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            torch.autograd.grad(fn(real, syn, metric), real + syn, seed)
            torch.cuda.synchronize()
        kernels = [e.name for e in prof.events()
                   if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith(("Memset", "Memcpy"))]
        assert len(kernels) == 2, kernels
        assert "gradient_match_forward_kernel" in kernels[0] and "gradient_match_backward_kernel" in kernels[1]
