"""Distillation methods DC, DSA, DM and MTT over the ops, models and evaluation layers."""
from .base import DistillMethod
from .config import CONFIGS, PRESETS, DCConfig, DMConfig, MTTConfig, dc_loops, make_config, parse_override
from .dc import DC, DSA
from .dm import DM
from .experts import ExpertConfig, build_experts, load_experts
from .mtt import MTT
from .runner import METHODS, RunFolderError, RunResult, distill, make_method

__all__ = ["CONFIGS", "DC", "DCConfig", "DM", "DMConfig", "DSA", "DistillMethod", "ExpertConfig", "METHODS",
           "MTT", "MTTConfig", "PRESETS", "RunFolderError", "RunResult", "build_experts", "dc_loops", "distill",
           "load_experts", "make_config", "make_method", "parse_override"]
