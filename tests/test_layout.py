"""The package's shape: imports run only downward (the shared core <- every stage; train <- rl),
eval and rl never import each other, and nothing in the core imports a stage."""

from __future__ import annotations

import ast

from tests.helpers import REPO

PKG = REPO / "huatuo_o1"
STAGES = ("datagen", "train", "rl", "eval", "testing")
# what each sub-package may import besides the core; datagen's difficulty filter scores with the
# original's scorer (eval.original), the one sideways import
ALLOWED = {
    "datagen": {"eval.original"},
    "train": set(),
    "rl": {"train"},
    "eval": set(),
    "testing": set(),
}
MODULE_ALLOWED: dict[str, set[str]] = {}  # single modules allowed one more import (none today)


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("huatuo_o1"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            yield from names if node.module == "huatuo_o1" else [node.module]
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("huatuo_o1"))


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_imports_run_only_downward():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        here = rel.parts[0] if len(rel.parts) > 1 else None  # None: the shared core
        for module in _imports(path):
            target = _stage_of(module)
            if target is None or target == here:
                continue
            rest = module.split(".", 1)[1]
            allowed = (
                (ALLOWED.get(here, set()) | MODULE_ALLOWED.get(rel.as_posix(), set())) if here else set()
            )
            if not any(rest == a or rest.startswith(a + ".") for a in allowed):
                bad.append(f"{rel} imports {module}")
    assert bad == []


def test_every_module_is_in_a_stage_folder_or_the_core():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(STAGES)
    for folder in STAGES:
        assert (PKG / folder / "__init__.py").exists()
