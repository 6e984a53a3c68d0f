"""The CPU allocator policy: applies on glibc, can be switched back, honours the opt-out variable."""
import ctypes.util
import platform

import pytest
import torch

from medistill.cpu_allocator import keep_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not ctypes.util.find_library("c"),
                           reason="mallopt is glibc's")


@glibc
def test_policy_applies_and_reverts():
    try:
        assert keep_freed_memory(True) is True
        x = torch.randn(64, 128, 32, 32)  # a block above glibc's 32 MiB mmap threshold, from the heap now
        assert torch.equal(x.clone(), x)
    finally:
        assert keep_freed_memory(False) is True


def test_opt_out_variable(monkeypatch):
    monkeypatch.setenv("MEDISTILL_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory(True) is False
