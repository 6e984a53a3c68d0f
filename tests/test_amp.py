"""The ``amp`` setting: bf16 autocast of the methods' network passes (float32 images, optimiser and losses)."""
import math
import warnings

import pytest
import torch

from medistill.methods import CONFIGS, make_config, make_method, parse_override
from medistill.methods.precision import network_autocast

# Tiny budgets: bf16 autocast on this CPU is much slower than float32, so a narrow ConvNet and small batches.
TINY = dict(model="convnet_w64", batch_real=8)


def test_autocast_context_runs_the_network_in_bf16_and_off_is_float32():
    net = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with network_autocast("bf16", "cpu"):
        assert net(x).dtype == torch.bfloat16
    with network_autocast("off", "cpu"):
        assert net(x).dtype == torch.float32


def test_bad_amp_value_is_a_clear_error():
    with pytest.raises(ValueError, match="amp must be one of 'off', 'bf16'.*'fp8'"):
        make_config("dm", 1, "quick", amp="fp8")
    with pytest.raises(ValueError, match="amp must be one of"):
        network_autocast("half", "cpu")


def test_amp_is_an_override_like_the_others():
    assert parse_override("amp=bf16", CONFIGS["dm"]) == ("amp", "bf16")
    assert make_config("mtt", 1, "paper").amp == "off"


@pytest.mark.parametrize("name", ["dm", "dc"])
def test_bf16_steps_give_finite_losses_float32_images_and_differ_from_float32(breast, name):
    losses = {}
    for amp in ("off", "bf16"):
        config = make_config(name, 1, "quick", amp=amp, **TINY)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            method = make_method(name, breast, config)
        before = method.images.detach().clone()
        losses[amp] = [float(method.step()) for _ in range(2)]
        assert all(math.isfinite(v) for v in losses[amp])
        assert method.images.dtype == torch.float32
        assert (method.images.detach() - before).abs().max() > 0, "the images did not change"
        momentum = method.optimizer.state_dict()["state"][0]["momentum_buffer"]
        assert momentum.dtype == torch.float32
    # Same seed, same draws: the two runs differ only by the precision of the network passes.
    assert losses["off"] != losses["bf16"]
    assert losses["bf16"] == pytest.approx(losses["off"], rel=0.05)


def test_cpu_warning_is_given_once(breast):
    import medistill.methods.precision as precision

    precision._warned_cpu = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            make_method("dm", breast, make_config("dm", 1, "quick", amp="bf16", **TINY))
    messages = [str(w.message) for w in caught if "meant for CUDA" in str(w.message)]
    assert len(messages) == 1


def test_cli_refuses_a_bad_amp_value(data_root, tmp_path, capsys):
    from medistill.cli import main

    code = main(["distill", "--dataset", "breastmnist", "--data-root", str(data_root), "--method", "dm", "--ipc", "1",
                 "--preset", "quick", "--set", "amp=fp16", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "amp must be one of 'off', 'bf16'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
