"""The README and docs/ pages stay true: links resolve, commands name real flags, recipes match.

- Every relative link in README.md and docs/*.md points to an existing file, and an `#anchor` to a
  heading of the target (GitHub's slug rules).
- Every command in a code block of README.md, docs/*.md and recipes/paper/*.sh that runs one of
  our scripts (`python X.py ...`, `accelerate launch ... X.py ...`, `bash recipes/...sh`) names only
  flags that script accepts: each flag after the script name must occur in the script's `--help`
  (`--help_all` for the training scripts once they offer it). Flags of `accelerate launch` itself
  come before the script name and are not checked.
- Each recipes/paper/*.sh passes `bash -n`, and README.md names it and quotes its command verbatim;
  each recipes/paper/ablations/*.sh passes `bash -n` and docs/ablations.md names it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
RECIPES = sorted((ROOT / "recipes" / "paper").glob("*.sh"))
# the paper's ablations (Table 2): named in docs/ablations.md, not quoted in the README
ABLATION_RECIPES = sorted((ROOT / "recipes" / "paper" / "ablations").glob("*.sh"))
ABLATIONS_DOC = ROOT / "docs" / "ablations.md"
# the folders whose .py files are our command-line scripts (bench/ and tests/ are not checked)
SCRIPT_DIRS = {ROOT, ROOT / "scripts", ROOT / "evaluation"}
# training scripts whose plain --help lists only our own flags; --help_all adds trl/transformers'
FULL_HELP = {"SFT_stage1.py", "RL_stage2.py", "RL_stage2_grpo.py", "RL_stage2_rloo.py", "RL_stage2_dpo.py",
             "train_verifier.py"}  # fmt: skip
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "NO_COLOR": "1",
    "COLUMNS": "200",
}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>&1", "2>"}
FLAG = re.compile(r"--[A-Za-z0-9][\w-]*")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


# --- markdown helpers -------------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link keeps its text
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in strip_fences(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def shell_commands(text: str) -> list[str]:
    """Logical shell lines: continuations joined, comment-only lines left out."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip() and not current.strip().startswith("#"):
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def split_words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like placeholders: plain split, comment cut
        return line.split(" #", 1)[0].split()


def our_script(word: str) -> Path | None:
    """The repository script a command word names (`X.py` in a script folder, or recipes/...sh)."""
    if word.startswith(("-", "$")) or "=" in word:
        return None
    path = (ROOT / word).resolve()
    if word.endswith(".py") and path.parent in SCRIPT_DIRS:
        return path
    if word.endswith(".sh") and word.lstrip("./").startswith("recipes/"):
        return path
    return None


def script_calls(line: str) -> list[tuple[Path, list[str]]]:
    """(script, flags after it) for each of our scripts the shell line runs."""
    calls, words = [], split_words(line)
    for i, word in enumerate(words):
        script = our_script(word)
        if script is None:
            continue
        runner = words[i - 1] if i else ""
        if word.endswith(".py") and not (runner.endswith(("python", "python3")) or "accelerate" in words[:i]):
            continue
        if word.endswith(".sh") and runner != "bash":
            continue
        flags = []
        for later in words[i + 1 :]:
            if later in SHELL_OPERATORS or our_script(later) is not None:
                break
            later = later.lstrip("[")  # optional flags written [--flag VALUE]
            if later.startswith("--"):
                flags.append(later.split("=", 1)[0].rstrip("]"))
        calls.append((script, flags))
    return calls


def recipe_command(path: Path) -> str:
    """The command of a recipes/paper script: its lines after the `cd` line, comments left out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cd "))
    return "\n".join(line for line in lines[start + 1 :] if line.strip() and not line.startswith("#"))


def all_commands() -> list[tuple[str, str]]:
    """(where, shell line) for every command in the docs' code blocks and the paper recipes."""
    out = []
    for doc in DOC_FILES:
        for block in code_blocks(doc.read_text(encoding="utf-8")):
            out += [(doc.name, line) for line in shell_commands(block)]
    for recipe in [*RECIPES, *ABLATION_RECIPES]:
        where = recipe.relative_to(ROOT).as_posix()
        out += [(where, line) for line in shell_commands(recipe_command(recipe))]
    return out


# --- help texts, one subprocess per script --------------------------------------------------


def run_help(script: Path, flag: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV}
    return subprocess.run(
        [sys.executable, str(script), flag],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def help_flags(script: Path) -> set[str]:
    """Every --flag the script's help text names (`--help_all` for the training scripts if it exists)."""
    done = run_help(script, "--help")
    assert done.returncode == 0, f"{script.name} --help failed: {done.stderr[-2000:]}"
    text = done.stdout
    if script.name in FULL_HELP and "--help_all" in text:
        full = run_help(script, "--help_all")
        assert full.returncode == 0, f"{script.name} --help_all failed: {full.stderr[-2000:]}"
        text += full.stdout
    return set(FLAG.findall(text))


@pytest.fixture(scope="module")
def accepted_flags() -> dict[Path, set[str]]:
    scripts = {s for _, line in all_commands() for s, _ in script_calls(line) if s.suffix == ".py"}
    scripts = sorted(s for s in scripts if s.is_file())
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(scripts, pool.map(help_flags, scripts), strict=True))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    bad = []
    for target in LINK.findall(strip_code(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http(s):, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            bad.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif not dest.is_relative_to(ROOT):
            bad.append(f"{target}: outside the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{doc.name}: broken links:\n" + "\n".join(bad)


def test_docs_pages_have_a_title_and_a_table_of_contents():
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert text.startswith("# "), f"{page.name}: the first line is not a '# Title'"
        sections = [line[3:] for line in strip_fences(text).splitlines() if line.startswith("## ")]
        if len(text.splitlines()) > 60 and len(sections) > 1:
            for section in sections:
                assert f"(#{github_slug(section)})" in text, (
                    f"{page.name}: '{section}' is not in its contents"
                )


def test_the_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_commands_name_flags_their_scripts_accept(accepted_flags):
    bad, checked = [], 0
    for where, line in all_commands():
        for script, flags in script_calls(line):
            rel = script.relative_to(ROOT).as_posix()
            if not script.is_file():
                bad.append(f"{where}: {rel} does not exist")
                continue
            if script.suffix == ".sh":
                continue  # the recipes take no flags of their own; their commands are checked themselves
            checked += 1
            unknown = [f for f in flags if f not in accepted_flags[script]]
            if unknown:
                bad.append(f"{where}: {rel} does not accept {', '.join(unknown)}")
    assert checked > 10, "the commands of the README were not found"
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_paper_recipe_is_valid_bash_and_quoted_in_the_readme(recipe):
    text = recipe.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text and 'cd "$(dirname "$0")/../.."' in text
    done = subprocess.run(["bash", "-n", str(recipe)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    readme = README.read_text(encoding="utf-8")
    assert f"recipes/paper/{recipe.name}" in readme, f"README.md does not name recipes/paper/{recipe.name}"
    assert recipe_command(recipe) in readme, f"README.md does not quote the command of {recipe.name} verbatim"


@pytest.mark.parametrize("recipe", ABLATION_RECIPES, ids=lambda p: p.name)
def test_ablation_recipe_is_valid_bash_and_named_in_the_ablations_page(recipe):
    text = recipe.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text and 'cd "$(dirname "$0")/../../.."' in text
    done = subprocess.run(["bash", "-n", str(recipe)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"recipes/paper/ablations/{recipe.name}" in ABLATIONS_DOC.read_text(encoding="utf-8")


def test_multi_gpu_launches_live_in_the_readme_and_the_recipes_only():
    """docs/ pages link to README's "Reproducing the paper" instead of repeating its commands."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in code_blocks(page.read_text(encoding="utf-8")):
            for line in shell_commands(block):
                words = split_words(line)
                if "--num_processes" in words:
                    n = words[words.index("--num_processes") + 1]
                    assert n == "1", f"{page.name}: a multi-GPU launch: {line}"
                assert not any(w.startswith("recipes/verl/run_ppo") for w in words), f"{page.name}: {line}"
