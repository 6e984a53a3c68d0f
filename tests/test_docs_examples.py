"""The documentation's examples run, so they cannot rot.

* The Python examples marked ``<!-- docs-test: NAME -->`` in README.md and docs/ops.md are executed
  (on the CPU, in well under a second each); docs/ops.md's also without the compiled extension, and its
  CUDA-graph example where a GPU and the CUDA kernels are present.
* Every ``medistill`` command line in the bash blocks of README.md and the docs pages written with it is
  parsed by the real argument parser, and ``distill`` lines also build their method configuration, so a
  renamed flag, preset or ``--set`` key fails here.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
OPS_DOC = REPO / "docs" / "ops.md"
# pages whose command lines are checked (docs/evaluation.md and the RESULTS templates have their own owners)
COMMAND_PAGES = [README] + [REPO / "docs" / f"{name}.md" for name in
                            ("methods", "ops", "formats", "scale-out", "study", "audit", "privacy")]


def python_block(path: Path, marker: str) -> str:
    """The ```python block that follows ``<!-- docs-test: marker -->`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    tag = f"<!-- docs-test: {marker} -->"
    assert tag in text, f"{path.name}: marker {tag!r} not found"
    match = re.compile(r"```python\n(.*?)\n```", re.S).search(text, text.index(tag))
    assert match is not None, f"{path.name}: no ```python block after {tag!r}"
    return match.group(1)


def run_block(code: str, name: str) -> dict:
    namespace = {"__name__": f"docs_example_{name}"}
    exec(compile(code, f"<{name}>", "exec"), namespace)
    return namespace


def test_readme_ops_example_runs():
    ns = run_block(python_block(README, "readme-ops-example"), "README.md")
    assert ns["loss"].dim() == 0 and torch.isfinite(ns["loss"])
    assert ns["syn"].grad is not None and ns["syn"].grad.abs().sum() > 0


def test_ops_doc_example_runs():
    ns = run_block(python_block(OPS_DOC, "ops-example"), "docs/ops.md")
    assert ns["syn"].grad is not None
    assert ns["per_class"].shape == (3,)
    assert ns["dm"].dim() == 0 and torch.isfinite(ns["dm"])


def test_ops_doc_example_runs_without_the_extension():
    """The fallback the page promises: the same example with ``medistill._C`` unavailable."""
    script = (
        "import sys\n"
        "sys.modules['medistill._C'] = None  # as if the extension were not built\n"
        "import medistill.ops\n"
        "assert not medistill.ops.has_ops(), medistill.ops.build_info()\n"
        f"exec(compile({python_block(OPS_DOC, 'ops-example')!r}, '<docs/ops.md>', 'exec'), {{}})\n"
        "print('docs example ran on the references')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "docs example ran on the references" in out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ops_doc_cuda_graph_example_runs():
    from medistill.ops import has_cuda_kernels

    if not has_cuda_kernels():
        pytest.skip("medistill._C was built without CUDA kernels")
    ns = run_block(python_block(OPS_DOC, "cuda-graph-example"), "docs/ops.md (CUDA graph)")
    torch.cuda.synchronize()
    before = ns["params"].floats.clone()
    ns["graph"].replay()
    torch.cuda.synchronize()
    assert not torch.equal(before, ns["params"].floats)  # each replay draws new parameters
    torch.testing.assert_close(ns["out"], ns["dsa"](ns["x"].detach(), ns["params"]), rtol=0, atol=0)


def command_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, argv after the program) of every medistill command in the page's bash blocks.

    A command is ``$M …``, ``.venv/bin/medistill …`` or ``… -m medistill …`` (torchrun); lines
    continued with a backslash are joined; lines with a ``...`` placeholder are skipped."""
    commands, in_bash, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_bash = line.strip() in ("```bash", "```sh")
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        text, pending = pending, ""
        if "..." in text or "…" in text.split("#")[0]:
            continue
        tokens = shlex.split(text, comments=True)
        for i, token in enumerate(tokens):
            if token in ("$M", ".venv/bin/medistill") or (token == "medistill" and i and tokens[i - 1] == "-m"):
                if tokens[i + 1:]:
                    commands.append((start, tokens[i + 1:]))
                break
    return commands


def test_pages_have_command_examples():
    found = {path.name: len(command_lines(path)) for path in COMMAND_PAGES}
    assert found["README.md"] >= 15, found


@pytest.mark.parametrize("path", COMMAND_PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_command_examples_parse(path):
    from medistill.cli import _method_config, build_parser

    parser = build_parser()
    for number, argv in command_lines(path):
        where = f"{path.relative_to(REPO)}:{number}: medistill {' '.join(argv)}"
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse reports the bad flag on stderr
            pytest.fail(f"{where}: the parser rejects it (exit {exc.code})")
        if args.command == "distill":
            try:
                _method_config(args)
            except ValueError as exc:
                pytest.fail(f"{where}: {exc}")
