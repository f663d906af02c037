"""The `src/freemask` deps each dvc.yaml stage must list: the package files its script imports.

A stage whose ``cmd`` runs ``python stages/X.py ...`` executes stages/X.py and every package module
it imports, transitively. The deps must list exactly those files: one missing and changing it does
not re-run the stage; one extra (or a whole directory) and changing an unrelated module does.

The import graph is read statically with ``ast`` (nothing is imported, torch stays unloaded): every
``import freemask.x`` / ``from freemask.x import y`` / relative ``from ..x import y`` anywhere in a
file, function bodies included; ``y`` counts when it is a submodule. Importing a submodule runs the
``__init__.py`` of each package above it, so those are deps too. Dynamic imports
(``importlib.import_module``) are not seen.

    python -m freemask.devtools.stage_deps --check   # exit 1 and print each stage's missing / extra deps
    python -m freemask.devtools.stage_deps --write   # rewrite the deps: lists of the dvc.yaml files in place

``--write`` orders each list as: the stage script, the package files sorted, then the other deps
(data, models, metrics...) in their existing order. Run from the repository root: the files are
dvc.yaml, the opt-in extras/dvc.yaml and every profile pipeline's pipelines/*/dvc.yaml (or those
given with --file), each with its paths relative to its stages' working folder: the dvc.yaml's own
(``../../src/freemask/...`` in a profile's), or its ``wdir``.
"""
from __future__ import annotations

import argparse
import ast
import copy
import io
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "freemask"
PACKAGE_DIR = f"src/{PACKAGE}"  # relative to the repository root, as dvc.yaml writes it
# the toy pipeline's opt-in stages: their own dvc.yaml, run from the repository root (``wdir: ..``)
EXTRA_PIPELINES = [Path("extras/dvc.yaml")]


def _module_file(src: Path, module: str) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _file_package(src: Path, file: Path) -> str:
    """The package a file's relative imports start from (its own name for an ``__init__.py``)."""
    parts = file.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1])


def _imported_modules(src: Path, file: Path) -> set[str]:
    """Dotted names of the package modules ``file`` imports directly (not their parents)."""
    inside = src in file.parents
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _file_package(src, file).split(".") if inside else []
                if node.level > len(pkg):
                    raise ValueError(f"{file}:{node.lineno}: relative import beyond the package")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _module_file(src, f"{base}.{a.name}"))
    return found


def imported_files(script: Path, src: Path) -> set[Path]:
    """Every package source file ``script`` imports, transitively, with the ``__init__.py`` of each
    package on the way. ``src`` is the directory holding the package (``<root>/src``)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        file = todo.pop()
        for module in _imported_modules(src, file):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # freemask, freemask.a, freemask.a.b: each runs
                path = _module_file(src, ".".join(parts[:i]))
                if path is None:
                    raise ValueError(f"{file}: imports {module}, which has no file under {src}")
                if path not in seen:
                    seen.add(path)
                    todo.append(path)
    return seen


def stage_script(stage: dict) -> str | None:
    """The script a stage's ``cmd`` runs (``python stages/X.py ...``), or None for other commands."""
    cmds = stage.get("cmd", "")
    for cmd in [cmds] if isinstance(cmds, str) else cmds:
        words = shlex.split(cmd)
        if len(words) > 1 and Path(words[0]).name.startswith("python") and words[1].endswith(".py"):
            return words[1]
    return None


def is_code_dep(dep: str) -> bool:
    """Deps this rule owns: the package, the stage scripts and tools/ (from a profile's folder: ``../../`` then
    those). Anything else (data, models) is left alone."""
    dep = dep.rstrip("/")
    while dep.startswith("../"):
        dep = dep[3:]
    return dep == PACKAGE_DIR or dep.startswith((f"{PACKAGE_DIR}/", "stages/", "tools/"))


def repo_root(base: Path) -> Path:
    """The repository holding ``base``: the nearest folder with ``src/freemask``."""
    for d in (base, *base.parents):
        if (d / PACKAGE_DIR).is_dir():
            return d
    raise FileNotFoundError(f"{base}: no {PACKAGE_DIR} here or above")


def code_deps(script: str, base: Path) -> list[str]:
    """The code deps a stage running ``script`` must list, in --write order: script, then package files
    sorted; paths relative to ``base``, the folder of the dvc.yaml."""
    base = base.resolve()
    files = imported_files((base / script).resolve(), repo_root(base) / "src")
    return [script, *sorted(Path(os.path.relpath(p, base)).as_posix() for p in files)]


@dataclass
class Diff:
    missing: list[str]
    extra: list[str]  # includes directories under src/freemask, which over-cover


def compare(stages: dict, root: Path) -> dict[str, Diff]:
    """Per python stage whose code deps differ from what its script imports: the missing and extra deps."""
    out = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage: its template
        script = stage_script(stage)
        if script is None:
            continue
        want = code_deps(script, root / stage.get("wdir", "."))
        have = [d.rstrip("/") for d in stage.get("deps") or [] if is_code_dep(d)]
        missing = [d for d in want if d not in have]
        extra = [d for d in have if d not in want]
        if missing or extra:
            out[name] = Diff(missing, extra)
    return out


def format_diff(diffs: dict[str, Diff]) -> str:
    lines = []
    for name, d in diffs.items():
        lines.append(f"{name}:")
        for label, deps in (("missing, add to deps", d.missing), ("extra, remove from deps", d.extra)):
            if deps:
                lines.append(f"  {label}:")
                lines += [f"      - {dep}" for dep in deps]
    return "\n".join(lines)


def rewrite_deps(stages: dict, root: Path) -> list[str]:
    """Set each python stage's deps to its code deps then its other deps, in place; return the changed
    stage names. ``stages`` may be a ruamel round-trip mapping (see _move_comments)."""
    changed = []
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage: its template
        script = stage_script(stage)
        if script is None:
            continue
        deps = stage.setdefault("deps", [])
        old = list(deps)
        new = code_deps(script, root / stage.get("wdir", ".")) + [d for d in old if not is_code_dep(d)]
        if old == new:
            continue
        comments = dict(deps.ca.items) if hasattr(deps, "ca") else None
        deps[:] = new
        if comments is not None:
            deps.ca.items.clear()
            deps.ca.items.update(_move_comments(comments, old, new))
        changed.append(name)
    return changed


def _move_comments(items: dict, old: list[str], new: list[str]) -> dict:
    """ruamel hangs a comment on the item before it, as one token: the item's end-of-line comment (or
    a bare newline), then the lines that follow. Each kept item keeps its token (a removed item's goes
    with it); what followed the old last item (blank lines, a comment above the next key) stays after
    the list."""
    tokens = {old[i]: entry[0] for i, entry in items.items() if entry and entry[0] is not None}
    tail = ""
    if old and old[-1] in tokens:
        token = tokens[old[-1]] = copy.copy(tokens[old[-1]])
        eol, _, tail = token.value.partition("\n")
        token.value = eol + "\n"
    moved = {}
    for i, value in enumerate(new):
        token = tokens.get(value)
        if i == len(new) - 1 and tail:
            token = copy.copy(token or tokens[old[-1]])
            token.value = (token.value if value in tokens else "\n") + tail
        if token is not None and token.value != "\n":
            moved[i] = [token, None, None, None]
    return moved


def _yaml():
    from ruamel.yaml import YAML  # a dvc dependency; round-trips dvc.yaml byte for byte

    y = YAML()
    y.indent(mapping=2, sequence=4, offset=2)
    y.preserve_quotes = True
    y.width = 4096
    return y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freemask.devtools.stage_deps", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 and print the diff if any stage's deps are off")
    mode.add_argument("--write", action="store_true", help="rewrite the deps: lists in place")
    parser.add_argument("--file", type=Path, action="append",
                        help="a dvc.yaml (repeatable); paths in it are relative to its directory. Default: "
                             "dvc.yaml, extras/dvc.yaml and pipelines/*/dvc.yaml")
    args = parser.parse_args(argv)
    files = args.file or [Path("dvc.yaml"), *EXTRA_PIPELINES, *sorted(Path("pipelines").glob("*/dvc.yaml"))]
    status = 0
    for file in files:
        status |= _one(file, args.check)
    return status


def _one(file: Path, check: bool) -> int:
    root = file.resolve().parent
    y = _yaml()
    doc = y.load(file.read_text())
    if check:
        diffs = compare(doc["stages"], root)
        if diffs:
            print(f"{file}: stage deps differ from what the stage scripts import"
                  f" (fix: python -m freemask.devtools.stage_deps --write)\n{format_diff(diffs)}")
            return 1
        print(f"{file}: every python stage lists exactly the package files it imports")
        return 0
    changed = rewrite_deps(doc["stages"], root)
    if changed:
        buf = io.StringIO()
        y.dump(doc, buf)
        file.write_text(buf.getvalue())
    print(f"{file}: rewrote deps of {', '.join(changed)}" if changed else f"{file}: deps already exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
