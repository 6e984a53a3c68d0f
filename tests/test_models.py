"""ConvNet and ResNet-18 shapes for 1/3 channels at 28/32/64 px, and seeded initialisation."""
import pytest
import torch

from medistill.models import ConvNet, build_model


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,features", [(28, 2048), (32, 2048), (64, 8192)])
def test_convnet_shapes(channels, size, features):
    net = ConvNet(channels, 7, size)
    x = torch.randn(2, channels, size, size)
    assert net.embed(x).shape == (2, features)
    assert net(x).shape == (2, 7)


def test_convnet_parameter_count_matches_reference():
    # REFERENCE.md: ~318k parameters for 1×28×28, K=9 (conv 3×(C·128·9+128), 3 norms, Linear(2048, 9)).
    n = sum(p.numel() for p in ConvNet(1, 9, 28).parameters())
    assert n == (1 * 128 * 9 + 128) + 2 * (128 * 128 * 9 + 128) + 3 * 256 + 2048 * 9 + 9


def test_instance_norm_is_groupnorm_per_channel():
    norms = [m for m in ConvNet(3, 2).modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 and m.affine for m in norms)


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_shapes(channels):
    net = build_model("resnet18", channels, 5)
    assert net(torch.randn(2, channels, 28, 28)).shape == (2, 5)


def test_seeded_init_is_repeatable():
    a = build_model("convnet", 1, 2, generator=torch.Generator().manual_seed(3))
    b = build_model("convnet", 1, 2, generator=torch.Generator().manual_seed(3))
    c = build_model("convnet", 1, 2, generator=torch.Generator().manual_seed(4))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 1, 2)


@pytest.mark.parametrize("size", [(32, 32), (16, 16), (7, 9)])
def test_avgpool2x2_matches_avg_pool2d(size):
    from medistill.models.convnet import AvgPool2x2

    x = torch.randn(3, 4, *size, dtype=torch.float64, requires_grad=True)
    ours, want = AvgPool2x2()(x), torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(ours, want)
    g = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(want, x, g)[0])
