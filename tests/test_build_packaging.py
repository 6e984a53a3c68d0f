"""Packaging and build knobs (issue #20): the sdist carries every source and header, every
third-party import is a declared dependency, setup.py's knobs and defaults, and the build record
that medistill.build_info() reports."""
import ast
import importlib.util
import subprocess
import sys
import platform
import tarfile
from pathlib import Path

import pytest

import medistill

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn"}


def load_setup():
    spec = importlib.util.spec_from_file_location("medistill_setup_under_test", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ guard keeps setup() from running
    return module


def third_party_imports() -> set:
    names = set()
    for path in (REPO / "medistill").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("medistill", "__future__")}


def test_every_imported_module_is_a_declared_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [dep for group in project.get("optional-dependencies", {}).values() for dep in group]
    declared = {dep.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
                for dep in project["dependencies"] + extras}  # an optional extra (opacus for [dp]) counts
    needed = {DISTRIBUTIONS.get(name, name).lower() for name in third_party_imports()}
    assert "scipy" in needed and "torch" in needed  # the scan sees the package's imports
    assert needed <= declared, f"imported but not declared in pyproject.toml: {sorted(needed - declared)}"
    assert (REPO / "LICENSE").is_file() and "MIT" in (REPO / "LICENSE").read_text()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


def test_sdist_carries_sources_headers_and_license(tmp_path):
    """setup.py sdist (no torch import, no compiler: a few seconds) on a copy of the files it packs."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md", "requirements.txt"):
        (tree / name).write_bytes((REPO / name).read_bytes())
    for folder in ("csrc", "medistill"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".so", ".pyc"):
                target = tree / path.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    (tree / "medistill" / "_build_config.py").write_text("# a stale record from a local build\n")
    out = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                         cwd=tree, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "[medistill build]" not in out.stderr  # an sdist neither imports torch nor probes a compiler
    (archive,) = (tmp_path / "dist").glob("medistill-*.tar.gz")
    with tarfile.open(archive) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    sources = {str(p.relative_to(REPO)) for p in (REPO / "csrc").rglob("*")
               if p.suffix in (".cpp", ".cu", ".h", ".cuh")}
    assert any(s.endswith(".h") for s in sources) and any(s.endswith(".cuh") for s in sources)
    assert sources <= members, f"missing from the sdist: {sorted(sources - members)}"
    assert {"LICENSE", "setup.py", "pyproject.toml", "requirements.txt", "medistill/ops/_extension.py"} <= members
    assert "medistill/_build_config.py" not in members  # each install writes its own


def test_build_knobs(monkeypatch):
    setup = load_setup()
    assert setup.DEFAULT_ARCH_LIST.endswith("+PTX")  # a GPU newer than the last listed arch gets PTX to JIT
    monkeypatch.setenv("MEDISTILL_SIMD", "off")
    flags, text = setup.decide_simd()
    assert flags == ["-DMEDISTILL_SIMD_OFF"] and "portable" in text
    monkeypatch.setenv("MEDISTILL_SIMD", "auto")
    flags, text = setup.decide_simd()
    assert flags == [] and "MEDISTILL_SIMD=auto" in text
    monkeypatch.setenv("MEDISTILL_SIMD", "avx512")
    with pytest.raises(SystemExit, match="MEDISTILL_SIMD must be one of auto, off"):
        setup.decide_simd()
    monkeypatch.setenv("MEDISTILL_EXT", "maybe")
    with pytest.raises(SystemExit, match="MEDISTILL_EXT must be one of 0, 1"):
        setup.extension_modules()


@pytest.mark.skipif(sys.platform != "linux", reason="the probe's expected answer is for Linux with GCC")
def test_openmp_probe_finds_gcc_openmp():
    import torch

    setup = load_setup()
    cflags, lflags, text = setup.probe_openmp(torch)
    if not torch.backends.openmp.is_available():
        assert cflags == [] and "not needed" in text
    else:
        assert cflags == ["-fopenmp"] and lflags == ["-fopenmp"], text


def test_build_info_reports_the_build():
    info = medistill.build_info()
    for key in ("ops_loaded", "load_error", "extension_built", "extension_decision", "cpu_simd", "cpu_simd_build",
                "openmp", "cuda_decision", "built_with_torch", "runtime_torch"):
        assert key in info
    if info["ops_loaded"] and info["cpu_simd_build"] is not None:  # a build by this setup.py
        # what the loaded build runs agrees with what setup.py decided (MEDISTILL_SIMD, the target)
        assert info["cpu_simd"].startswith("portable") == ("portable" in info["cpu_simd_build"]), info
        if platform.machine().lower() not in ("x86_64", "amd64"):
            assert info["cpu_simd"].startswith("portable"), info
