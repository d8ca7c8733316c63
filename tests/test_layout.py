"""The package's shape: imports run only downward (the shared core <- every stage; train <- rl),
eval and rl never import each other, nothing in the core imports a stage, and no two modules import
each other, directly or round a longer loop (imports inside functions count too)."""

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


def _module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each package module -> the package modules it imports (at the top or inside a function)."""
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("huatuo_o1"):
                for alias in node.names:  # `from huatuo_o1.rl import grpo` imports the module grpo
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in paths else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in paths)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each holds an import loop)."""
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def test_no_import_loops():
    graph = import_graph()
    assert {"huatuo_o1.rl.grpo_args", "huatuo_o1.rl.grpo_trainer"} <= graph["huatuo_o1.rl.grpo"]
    assert import_loops(graph) == []


def test_import_loops_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_loops(graph) == [["a", "b", "c"]]


def test_script_flags_and_trainers_import_no_command_line():
    """The flags modules import no trainer and no command line; the trainers no command line."""
    graph = import_graph()
    for algo in ("grpo", "rloo", "dpo"):
        cli, args, trainer = (f"huatuo_o1.rl.{algo}{tail}" for tail in ("", "_args", "_trainer"))
        assert not {m for m in graph[args] if m.endswith("_trainer") or m in CLI_MODULES}, args
        assert not graph[trainer] & CLI_MODULES, trainer
        assert args in graph[cli] and args in graph[trainer]


CLI_MODULES = {f"huatuo_o1.rl.{name}" for name in ("grpo", "rloo", "dpo", "ppo")}


def test_grpo_rloo_and_dpo_load_no_trl_ppo():
    """trl 1.13 and later ship no `trl.experimental.ppo`: GRPO, RLOO and DPO (and the shared flag
    helpers) must not load it, even where an older trl still has it."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import huatuo_o1.rl.options, huatuo_o1.rl.grpo_trainer, huatuo_o1.rl.rloo_trainer\n"
        "import huatuo_o1.rl.dpo_trainer\n"
        "from trl import DPOTrainer, GRPOTrainer, RLOOTrainer\n"
        "print(any(m.startswith('trl.experimental.ppo') for m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
