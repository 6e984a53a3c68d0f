"""Typed configuration of each method, with the published defaults and the presets.

``paper``: the published iteration counts and hyperparameters (docs/methods.md, "Presets").
``quick``: a budget that finishes in a few minutes on a 2-core CPU for BreastMNIST.
Explicit overrides (``dataclasses.replace`` or ``--set key=value``) apply on top of a preset.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from ..ops.dsa_params import DEFAULT_STRATEGY
from ..privacy.settings import check_dp_config
from .precision import check_amp

DSA_STRATEGY = DEFAULT_STRATEGY  # the six families of medistill.ops, in order: color_crop_cutout_flip_scale_rotate

# Published (outer_loop, inner_loop) of DC/DSA by IPC.
DC_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def dc_loops(ipc: int) -> tuple[int, int]:
    """(outer_loop, inner_loop) for any IPC.

    Published values for 1, 10, 20, 30, 40, 50. Otherwise outer_loop = ipc and inner_loop is the
    linear interpolation of the published inner loops between the neighbouring published IPCs
    (e.g. IPC 5 → (5, 23)); above 50, (ipc, 10).
    """
    if ipc < 1:
        raise ValueError(f"ipc must be ≥ 1, got {ipc}")
    if ipc in DC_LOOPS:
        return DC_LOOPS[ipc]
    if ipc > 50:
        return ipc, 10
    keys = sorted(DC_LOOPS)
    hi = next(k for k in keys if k > ipc)
    lo = max(k for k in keys if k < ipc)
    inner_lo, inner_hi = DC_LOOPS[lo][1], DC_LOOPS[hi][1]
    inner = inner_lo + (inner_hi - inner_lo) * (ipc - lo) / (hi - lo)
    return ipc, int(round(inner))


@dataclass
class CommonConfig:
    """Settings every method shares."""

    ipc: int = 10
    iterations: int = 1000
    init: str = "real"  # "real" (random real images of the class) or "noise" (standard normal)
    batch_real: int = 256
    lr_img: float = 0.1
    momentum_img: float = 0.5
    model: str = "convnet"
    dsa_strategy: str = DSA_STRATEGY
    align_corners: bool = False
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    amp: str = "off"  # "off" (float32) or "bf16": autocast of the network passes in each step (meant for CUDA)


@dataclass
class DCConfig(CommonConfig):
    """DC (gradient matching); ``dsa=True`` is DSA. outer/inner loops default to :func:`dc_loops`."""

    init: str = "noise"
    lr_img: float = 0.1
    lr_net: float = 0.01
    batch_train: int = 256
    metric: str = "ours"
    outer_loop: int | None = None
    inner_loop: int | None = None
    dsa: bool = False
    class_batching: str = "auto"  # per-class gradients: "loop", "vmap" (one pass over all classes), "auto" (vmap on CUDA)

    def loops(self) -> tuple[int, int]:
        outer, inner = dc_loops(self.ipc)
        return self.outer_loop or outer, self.inner_loop or inner


@dataclass
class DMConfig(CommonConfig):
    """DM (distribution matching): lr 1.0, 20,000 iterations, init real, Siamese DSA."""

    iterations: int = 20000
    lr_img: float = 1.0
    # Differential privacy (DP-DM, docs/privacy.md): None = not private; the rest default as medistill.privacy says.
    dp_epsilon: float | None = None
    dp_delta: float | None = None  # None: 1/(10·N)
    dp_clip: float | None = None  # None: 20.0, the per-example L2 clip of the embedding
    dp_sample_rate: float | None = None  # None: min(1, K·batch_real/N), Poisson rate per image and iteration
    dp_secret_seed: int | None = None  # None: drawn from the OS; seeds the private draws (sampling, noise)


@dataclass
class MTTConfig(CommonConfig):
    """MTT (trajectory matching), the MedMNIST study's settings; experts from ``medistill experts``."""

    iterations: int = 5000
    lr_img: float = 1000.0
    lr_lr: float = 1e-6
    lr_teacher: float = 0.01
    momentum_lr: float = 0.5
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 20
    batch_syn: int | None = None  # None: the whole synthetic set each step
    align_corners: bool = True  # MTT's code resamples with align_corners=True
    num_experts: int = 100
    expert_train_epochs: int = 50
    expert_dir: str | None = None
    zca: bool = False  # distil on ZCA-whitened images (eps 0.1); the experts must be whitened alike (paper: True)


CONFIGS = {"dc": DCConfig, "dsa": DCConfig, "dm": DMConfig, "mtt": MTTConfig}
PRESETS = ("paper", "quick")


def _quick_overrides(method: str, ipc: int) -> dict:
    if method in ("dc", "dsa"):
        # 64 real images per class. An IPC 1 iteration is one outer step (~1 s on one CPU core); at IPC ≥ 2
        # the published loops cost minutes per iteration on a CPU, so quick trains the network 10 epochs
        # between outer steps instead of the published inner_loop, for 5 iterations.
        if ipc == 1:
            return {"iterations": 200, "batch_real": 64, "checkpoint_every": 20, "log_every": 10}
        return {"iterations": 5, "inner_loop": 10, "batch_real": 64, "checkpoint_every": 1, "log_every": 1}
    if method == "dm":
        return {"iterations": 400, "batch_real": 64, "checkpoint_every": 50, "log_every": 20}
    if method == "mtt":
        # The study's MTT settings assume large datasets (many SGD steps per expert epoch) and
        # ZCA-whitened images. On BreastMNIST an expert epoch is 3 SGD steps, so 2 expert epochs are
        # matched with 5 synthetic steps: with 10 steps (lr_img 1000, and again 100) the loss went to
        # NaN within 10 iterations (observed on the training loss, before any evaluation).
        return {"iterations": 100, "lr_img": 100.0, "lr_lr": 1e-7, "syn_steps": 5, "expert_epochs": 2,
                "max_start_epoch": 4, "num_experts": 3, "expert_train_epochs": 8, "checkpoint_every": 10, "log_every": 5}
    raise ValueError(method)


# Validated by make_config: counts that must be ≥ 1 (None allowed for the optional ones).
POSITIVE_COUNTS = ("ipc", "iterations", "batch_real", "checkpoint_every", "log_every", "batch_train", "syn_steps",
                   "expert_epochs", "max_start_epoch", "num_experts", "expert_train_epochs")
OPTIONAL_COUNTS = ("outer_loop", "inner_loop", "batch_syn")
# Validated by check_learning_rates: finite and > 0 (lr_lr may be 0: the learned lr stays put); momenta in [0, 1).
POSITIVE_RATES = ("lr_img", "lr_net", "lr_teacher")
NON_NEGATIVE_RATES = ("lr_lr",)
MOMENTA = ("momentum_img", "momentum_lr")
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a word"}


def _field_types(config_cls) -> dict[str, tuple[str, bool]]:
    """{field: (base type name, None allowed)} from the dataclass annotations ('int | None' → ('int', True))."""
    out = {}
    for f in dataclasses.fields(config_cls):
        names = [t.strip() for t in str(f.type).split("|")]
        base = next((t for t in names if t != "None"), "str")
        out[f.name] = (base, "None" in names)
    return out


def known_settings(config_cls) -> str:
    """'batch_real (int), checkpoint_every (int), …' for error messages."""
    types = _field_types(config_cls)
    return ", ".join(f"{k} ({base}{' or none' if optional else ''})" for k, (base, optional) in sorted(types.items()))


def check_config(config) -> None:
    """ValueError naming the setting when a count is below 1 or a value has the wrong type."""
    types = _field_types(type(config))
    for key, (base, optional) in types.items():
        value = getattr(config, key)
        if value is None and optional:
            continue
        ok = {"int": isinstance(value, numbers.Integral) and not isinstance(value, bool),
              "float": isinstance(value, numbers.Real) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "str": isinstance(value, str)}.get(base, True)
        if not ok:
            raise ValueError(f"setting {key} must be {_TYPE_WORDS.get(base, base)}"
                             f"{' or none' if optional else ''}, got {value!r}")
    for key in POSITIVE_COUNTS + OPTIONAL_COUNTS:
        value = getattr(config, key, None)
        if value is not None and value < 1:
            raise ValueError(f"setting {key} must be at least 1, got {value}"
                             + (" (--iterations or --set iterations=N)" if key == "iterations" else
                                " (--ipc)" if key == "ipc" else f" (--set {key}=N)"))


def check_learning_rates(config) -> None:
    """ValueError naming the setting when a learning rate is not a finite number above 0 (``lr_lr``: 0 allowed),
    or a momentum is outside [0, 1). The command line checks this before any run starts; the library leaves
    such a run to its divergence guard."""
    for key in POSITIVE_RATES + NON_NEGATIVE_RATES:
        if not hasattr(config, key):
            continue
        value = getattr(config, key)
        low_ok = value >= 0 if key in NON_NEGATIVE_RATES else value > 0
        if not (math.isfinite(value) and low_ok):
            bound = "≥ 0" if key in NON_NEGATIVE_RATES else "> 0"
            raise ValueError(f"setting {key} must be a finite number {bound}, got {value!r} "
                             f"(--set {key}=…; the preset's value is {getattr(type(config)(), key)!r})")
    for key in MOMENTA:
        if hasattr(config, key) and not 0 <= getattr(config, key) < 1:
            raise ValueError(f"setting {key} must be in [0, 1), got {getattr(config, key)!r} (--set {key}=…)")


def make_config(method: str, ipc: int, preset: str = "paper", **overrides):
    """The config of ``method`` at ``ipc`` for a preset, with explicit overrides applied last.

    Refuses unknown settings, values of the wrong type and counts below 1 (:func:`check_config`);
    learning rates are checked by :func:`check_learning_rates`.
    """
    method = method.lower()
    if method not in CONFIGS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(CONFIGS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {"ipc": ipc}
    if method == "dsa":
        values.update(dsa=True, init="real")
    if method == "mtt" and preset == "paper":
        values["zca"] = True  # the MedMNIST study ran MTT on ZCA-whitened images
    if preset == "quick" and isinstance(ipc, int) and ipc >= 1:
        values.update(_quick_overrides(method, ipc))
    if overrides.get("dp_epsilon") is not None:
        values["init"] = "noise"  # DP-DM starts from noise (medistill.privacy.check_dp_config refuses real)
    cls = CONFIGS[method]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {method} setting(s): {', '.join(sorted(unknown))}; known: {known_settings(cls)}")
    values.update(overrides)
    config = cls(**values)
    check_config(config)
    if config.init not in ("real", "noise"):
        raise ValueError(f"init must be 'real' or 'noise', got {config.init!r}")
    check_amp(config.amp)
    check_dp_config(config)
    return config


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_override(text: str, config_cls, method: str | None = None) -> tuple[str, object]:
    """'key=value' → (key, value typed like the dataclass field); ValueError naming the key, its type and the
    settings there are."""
    if "=" not in text:
        raise ValueError(f"--set {text!r} must look like key=value; settings: {known_settings(config_cls)}")
    key, raw = text.split("=", 1)
    types = _field_types(config_cls)
    if key not in types:
        raise ValueError(f"--set {text}: unknown {method + ' ' if method else ''}setting {key!r}; "
                         f"known: {known_settings(config_cls)}")
    base, optional = types[key]
    if optional and raw.lower() == "none":
        return key, None
    try:
        if base == "bool":
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return key, raw.lower() in _TRUE
        if base == "int":
            return key, int(raw)
        if base == "float":
            return key, float(raw)
    except ValueError:
        default = getattr(config_cls(), key)
        raise ValueError(f"--set {text}: {key} takes {_TYPE_WORDS.get(base, base)}{' or none' if optional else ''}, "
                         f"got {raw!r} (e.g. {key}={str(default).lower() if base == 'bool' else default})") from None
    return key, raw


def config_dict(config) -> dict:
    return dataclasses.asdict(config)


__all__ = ["CommonConfig", "DCConfig", "DMConfig", "MTTConfig", "CONFIGS", "PRESETS", "DSA_STRATEGY",
           "check_config", "check_learning_rates", "dc_loops", "known_settings", "make_config", "parse_override",
           "config_dict"]
