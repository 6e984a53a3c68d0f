"""The package's layers only look down (the order in ``LAYERS`` below, summarised in the README), read from the source with ``ast``.

Every module under ``medistill/`` is parsed; every static import of a medistill module (absolute or
relative, at the top or inside a function) is an edge from the importing area (the first name below
``medistill``: ``data``, ``methods``, ``cli``, …) to the imported one. An area may import areas on lower
layers only: not a higher one, and not another area on its own layer (those are independent). A name
starting with ``_`` (a private function, class or module) is not imported from another area, and
``argparse`` is imported under ``medistill/cli/`` only, the one layer that parses arguments.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "medistill"
ROOT = "<root>"  # medistill/__init__.py: re-exports the ops' build info and the version; only the CLI imports it

# Bottom to top. Areas on one layer import nothing from each other.
LAYERS = [
    # torch ops and their references (nothing else from medistill, so the ops can be used alone), and the
    # small stand-alone helpers: crash-safe writes, the version, run-folder locks, the CPU allocator knob
    {"ops", "atomic_io", "version", "run_lock", "cpu_allocator"},
    # datasets and image sets; networks; torchrun collectives; the DP mechanism and accountant (DP-DM's)
    {"data", "models", "distributed", "privacy"},
    {"evaluate"},  # trains and scores networks on an image set
    {"selection"},  # real-data baselines (random subsets, herding, k-center): scored with evaluate
    {"methods"},  # DC, DSA, DM, MTT, the run folder; uses selection's random baseline and check_ipc
    {"predictor", "study", "export", "audit"},  # on distilled sets and run folders
    {"cli", ROOT},  # parses arguments and prints; the package facade
    {"__main__"},  # `python -m medistill`: the CLI's main
]
LEVEL = {area: level for level, areas in enumerate(LAYERS) for area in areas}

# Known exceptions, each (importing module, imported module, name): to be removed, not added to.
PRIVATE_EXCEPTIONS: set[tuple[str, str, str]] = set()
UPWARD_EXCEPTIONS: set[tuple[str, str]] = set()  # (importing module, imported module)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def imports() -> list[tuple[str, str, str | None, int]]:
    """(importing module, imported medistill module, imported name or None, line) for every static import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path)
        package = module.split(".") if is_package else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(module, a.name, None, node.lineno) for a in node.names
                          if a.name == "medistill" or a.name.startswith("medistill.")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target != "medistill" and not target.startswith("medistill."):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if _exists(sub):  # `from .. import data`: the module itself
                        found.append((module, sub, None, node.lineno))
                    else:
                        found.append((module, target, alias.name, node.lineno))
    return found


def test_the_walk_sees_the_imports():
    edges = imports()
    assert len({m for m, *_ in edges}) > 50, "the walk found too few importing modules"
    assert ("medistill.cli.common", "medistill.data", "load_dataset") in {(m, t, n) for m, t, n, _ in edges}
    assert all(_area(t) in LEVEL for _, t, _, _ in edges), sorted({_area(t) for _, t, _, _ in edges} - set(LEVEL))


def test_every_area_has_a_layer():
    areas = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__" and p.stem != "_build_config")
             or (p.is_dir() and (p / "__init__.py").exists())}
    assert areas <= set(LEVEL), f"place {sorted(areas - set(LEVEL))} in LAYERS"


def test_layers_only_look_down():
    bad = []
    for module, target, name, line in imports():
        src, dst = _area(module), _area(target)
        if src == dst or (module, target) in UPWARD_EXCEPTIONS:
            continue
        if LEVEL[dst] >= LEVEL[src]:
            where = "a higher layer" if LEVEL[dst] > LEVEL[src] else "its own layer"
            bad.append(f"{module}:{line} imports {target}{'.' + name if name else ''} ({dst}: {where})")
    assert not bad, "\n".join(bad)


def test_ops_import_nothing_else_from_medistill():
    assert not [(m, t) for m, t, _, _ in imports() if _area(m) == "ops" and _area(t) != "ops"]


def test_no_private_names_across_areas():
    bad = []
    for module, target, name, line in imports():
        if _area(module) == _area(target):
            continue
        private = [p for p in target.split(".")[1:] + ([name] if name else [])
                   if p.startswith("_") and not (p.startswith("__") and p.endswith("__"))]
        if private and (module, target, name) not in PRIVATE_EXCEPTIONS:
            bad.append(f"{module}:{line} imports {target}{'.' + name if name else ''}")
    assert not bad, "\n".join(bad)


def test_private_exceptions_are_still_needed():
    edges = {(m, t, n) for m, t, n, _ in imports()}
    assert not PRIVATE_EXCEPTIONS - edges, f"remove from PRIVATE_EXCEPTIONS: {PRIVATE_EXCEPTIONS - edges}"


def test_only_the_cli_parses_arguments():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, _ = _module_name(path)
        if _area(module) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "argparse" or n.startswith("argparse.") for n in names):
                bad.append(f"{module}:{node.lineno}")
    assert not bad, f"argparse outside medistill/cli/: {bad}"
