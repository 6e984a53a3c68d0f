"""The methods on a CUDA device (skipped without one): DC/DSA's vmapped class gradients against the
class loop, and no host synchronisation inside a DC outer step or a DM iteration. Generated data
(the device machine does not carry ../shared)."""
import pytest
import torch

from medistill.data import ImageDataset
from medistill.methods import make_config, make_method

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CLASSES = 4


@pytest.fixture(scope="module")
def generated():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(CLASSES).repeat_interleave(40)
    labels[:12] = 1  # class 0 smaller than the others: the vmapped pass pads it
    images = torch.randn(len(labels), 1, 28, 28, generator=g)
    return ImageDataset(name="generated", train_images=images, train_labels=labels, val_images=images[:8],
                        val_labels=labels[:8], test_images=images[:8], test_labels=labels[:8],
                        mean=torch.zeros(1), std=torch.ones(1), class_names=[str(c) for c in range(CLASSES)],
                        md5="generated")


@requires_cuda
@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_cuda_vmap_class_gradients_equal_the_loop(generated, name):
    updates = {}
    for batching in ("loop", "vmap"):
        method = make_method(name, generated, make_config(name, 2, batch_real=40, class_batching=batching),
                             device="cuda")
        assert method.vmap_classes == (batching == "vmap")
        before = method.images.detach().clone()
        net = method.sample_network()
        method.outer_step(net, list(net.parameters()))
        updates[batching] = (method.images.detach() - before).cpu()
    assert updates["loop"].abs().max() > 1e-4
    rel = (updates["vmap"] - updates["loop"]).norm() / updates["loop"].norm()
    assert rel < 2e-2, f"vmap vs loop image update differs by {rel:.2e} (relative)"  # TF32 convs on both


@requires_cuda
@pytest.mark.parametrize("name", ["dc", "dsa", "dm"])
def test_cuda_no_host_sync_in_a_step(generated, name):
    method = make_method(name, generated, make_config(name, 2, batch_real=16), device="cuda")
    net = method.sample_network()
    step = method.step if name == "dm" else (lambda: method.outer_step(net, list(net.parameters())))
    step()  # first call: caches (DSA constants, cuDNN plans)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)
