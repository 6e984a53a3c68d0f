"""Benchmark conventions shared by every file under benchmarks/.

* One thread: on a 2-core machine shared with other work, multi-thread timings swing by 10x.
  (Override with MEDISTILL_BENCH_THREADS.)
* Each benchmark is parametrised by ``impl`` ("reference" or "medistill") and sets
  ``benchmark.group`` to the case it measures; both implementations of a case run in the same
  session, and the summary prints the median ratio reference / medistill per group.
"""
import json
import os

import pytest
import torch

THREADS = int(os.environ.get("MEDISTILL_BENCH_THREADS", "1"))
DEVICE = os.environ.get("MEDISTILL_BENCH_DEVICE", "cpu")
torch.set_num_threads(THREADS)


@pytest.fixture
def device():
    """Where benchmarks put their tensors: $MEDISTILL_BENCH_DEVICE (cpu by default, cuda in gpu_check.sh)."""
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("MEDISTILL_BENCH_DEVICE=cuda but no CUDA device")
    return torch.device(DEVICE)


def synchronize(device) -> None:
    """Wait for queued GPU work so a timing covers it (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(params=["reference", "medistill"])
def impl(request):
    return request.param


def _medians_by_group(config):
    bench_session = getattr(config, "_benchmarksession", None)
    groups = {}
    for bench in getattr(bench_session, "benchmarks", []) or []:
        if not bench:  # a benchmark that errored has no timings
            continue
        impl = (bench.params or {}).get("impl")
        if impl is None:
            continue
        groups.setdefault(bench.group or bench.name, {})[impl] = bench.stats.median
    return groups


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    groups = _medians_by_group(config)
    rows = []
    for group, medians in sorted(groups.items()):
        if "reference" in medians and "medistill" in medians:
            ratio = medians["reference"] / medians["medistill"]
            rows.append({"group": group, "reference_ms": medians["reference"] * 1e3,
                         "medistill_ms": medians["medistill"] * 1e3, "speedup": ratio})
    if not rows:
        return
    device = DEVICE
    terminalreporter.write_sep("=", f"medistill vs reference (median, {THREADS} thread(s), {device})")
    terminalreporter.write_line(f"{'case':58s} {'reference ms':>13s} {'medistill ms':>13s} {'speedup':>8s}")
    for r in rows:
        terminalreporter.write_line(
            f"{r['group']:58s} {r['reference_ms']:13.3f} {r['medistill_ms']:13.3f} {r['speedup']:7.2f}x"
        )
    out = os.environ.get("MEDISTILL_BENCH_RATIOS")
    if out:
        with open(out, "w") as f:
            json.dump({"threads": THREADS, "device": device, "torch": torch.__version__, "rows": rows}, f, indent=1)


@pytest.fixture(scope="module")
def op_allocator_policy():
    """``MEDISTILL_BENCH_KEEP_FREED=both``: both sides of an op benchmark with the allocator policy
    medistill's CLI sets on CPU (freed memory kept in the heap; ``medistill/cpu_allocator.py``);
    otherwise glibc's defaults, untouched. glibc cannot go back to its adaptive thresholds once the
    policy was set, so run the "both" case in its own pytest process."""
    from medistill.cpu_allocator import keep_freed_memory

    keep = os.environ.get("MEDISTILL_BENCH_KEEP_FREED") == "both"
    if keep:
        keep_freed_memory(True)
    yield
    if keep:
        keep_freed_memory(False)

