"""dvc.yaml's code deps are exact: each python stage lists its script and precisely the `src/freemask`
files that script imports, transitively (freemask.devtools.stage_deps). A missing file would not
re-run the stage when it changes; an extra one (or a directory) would re-run it for nothing."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from freemask.devtools.stage_deps import compare, format_diff, imported_files, main, rewrite_deps, stage_script

ROOT = Path(__file__).resolve().parents[1]
FIX = "python -m freemask.devtools.stage_deps --write"


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_python_stage_lists_exactly_the_package_files_it_imports():
    stages = _stages()
    assert sum(stage_script(s) is not None for s in stages.values()) >= 10  # not vacuous
    diffs = compare(stages, ROOT)
    assert not diffs, f"dvc.yaml deps differ from the stage scripts' imports (fix: {FIX})\n{format_diff(diffs)}"


PROFILES = sorted(p.parent for p in (ROOT / "pipelines").glob("*/dvc.yaml") if p.parent.name != "fixtures")


def test_every_profile_runs_the_same_stages_and_lists_exactly_their_imports():
    """A real profile and its smoke configuration differ by params only: their dvc.yaml files are one
    text (so the smoke run in CI exercises the real profile's stages), with exact code deps."""
    assert {p.name for p in PROFILES} >= {"voc", "voc_smoke", "cityscapes", "cityscapes_smoke", "voc_zero_shot",
                                           "voc_zero_shot_smoke", "ade20k", "ade20k_smoke"}
    reference = (ROOT / "pipelines/voc/dvc.yaml").read_text()
    differ = [p.name for p in PROFILES if (p / "dvc.yaml").read_text() != reference]
    assert not differ, f"pipelines/{differ}/dvc.yaml differ from pipelines/voc/dvc.yaml: copy it over"
    for folder in (ROOT / "pipelines/voc", ROOT / "pipelines/fixtures"):
        stages = yaml.safe_load((folder / "dvc.yaml").read_text())["stages"]
        diffs = compare(stages, folder)
        assert not diffs, f"{folder}/dvc.yaml deps are off (fix: {FIX})\n{format_diff(diffs)}"


def test_every_profile_params_file_validates():
    from freemask.params import load

    for folder in PROFILES:
        assert load(folder / "params.yaml").profile.classes


def test_no_directory_deps_under_the_package():
    dirs = {name: d for name, s in _stages().items() for d in s.get("deps", [])
            if d.startswith("src/freemask") and (ROOT / d).is_dir()}
    assert not dirs, f"list files, not directories: {dirs}"


# the checker itself, on edited copies of the parsed dvc.yaml

def test_a_removed_dep_is_reported_missing():
    stages = copy.deepcopy(_stages())
    stages["train_synthetic"]["deps"].remove("src/freemask/metrics/segmentation.py")
    stages["report"]["deps"].remove("stages/report.py")
    diffs = compare(stages, ROOT)
    assert set(diffs) == {"train_synthetic", "report"}
    assert diffs["train_synthetic"].missing == ["src/freemask/metrics/segmentation.py"]
    assert diffs["report"].missing == ["stages/report.py"]
    assert not diffs["train_synthetic"].extra and not diffs["report"].extra
    message = format_diff(diffs)
    assert "train_synthetic:\n  missing, add to deps:\n      - src/freemask/metrics/segmentation.py" in message


def test_an_unrelated_module_or_a_directory_is_reported_extra():
    stages = copy.deepcopy(_stages())
    stages["world"]["deps"].append("src/freemask/metrics/zero_shot.py")
    deps = stages["evaluate"]["deps"]
    deps[:] = [d for d in deps if not d.startswith("src/freemask/segmenters/")] + ["src/freemask/segmenters"]
    diffs = compare(stages, ROOT)
    assert diffs["world"].extra == ["src/freemask/metrics/zero_shot.py"] and not diffs["world"].missing
    assert diffs["evaluate"].extra == ["src/freemask/segmenters"]
    assert "src/freemask/segmenters/mask2former.py" in diffs["evaluate"].missing
    assert "extra, remove from deps:\n      - src/freemask/segmenters" in format_diff(diffs)


def test_non_package_deps_are_left_alone():
    stages = copy.deepcopy(_stages())
    report = stages["report"]
    report["deps"].remove("data/composed")
    report["deps"].append("models/whatever")
    assert compare(stages, ROOT) == {}  # data / model / metrics deps are not the rule's business
    report["deps"] = ["data/composed", "src/freemask/reports", "metrics/eval.json", "stages/report.py"]
    assert rewrite_deps(stages, ROOT) == ["report"]
    package = [d for d in _stages()["report"]["deps"] if d.startswith("src/freemask/")]
    assert report["deps"] == ["stages/report.py", *package, "data/composed", "metrics/eval.json"]


def test_dvc_yaml_is_in_write_order():
    """Script, package files sorted, then the data / model deps: --write would change nothing."""
    stages = copy.deepcopy(_stages())
    assert rewrite_deps(stages, ROOT) == [], f"run {FIX}"
    assert stages == _stages()


def test_stage_script_from_cmd():
    assert stage_script({"cmd": "python stages/train.py synthetic"}) == "stages/train.py"
    assert stage_script({"cmd": ["mkdir -p x", "python3 stages/world.py"]}) == "stages/world.py"
    assert stage_script({"cmd": "dvc plots show"}) is None


def test_imports_are_followed_statically(tmp_path):
    """Function-level and relative imports, `from pkg import submodule`, and every package's
    __init__ on the way; a module nobody imports stays out."""
    files = {
        "src/freemask/__init__.py": "",
        "src/freemask/a/__init__.py": "",
        "src/freemask/a/b.py": "def f():\n    from ..c import d, NAME\n    from . import e\n",
        "src/freemask/a/e.py": "import freemask.top\n",
        "src/freemask/a/unused.py": "",
        "src/freemask/c/__init__.py": "NAME = 1\n",
        "src/freemask/c/d.py": "raise SystemExit('never run')\n",
        "src/freemask/top.py": "import os\n",
        "stages/s.py": "import json\nfrom freemask.a.b import f\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {p.relative_to(tmp_path).as_posix() for p in imported_files(tmp_path / "stages/s.py", tmp_path / "src")}
    assert found == set(files) - {"src/freemask/a/unused.py", "stages/s.py"}


def test_an_import_of_a_missing_module_is_an_error(tmp_path):
    (tmp_path / "src/freemask").mkdir(parents=True)
    (tmp_path / "src/freemask/__init__.py").write_text("")
    (tmp_path / "s.py").write_text("from freemask.gone import x\n")
    with pytest.raises(ValueError, match="freemask.gone"):
        imported_files(tmp_path / "s.py", tmp_path / "src")


def _edit(text: str, stage: str, old: str, new: str) -> str:
    """Replace the first ``old`` inside ``stage``'s block of a dvc.yaml text."""
    start = text.index(f"\n  {stage}:\n")
    at = text.index(old, start)
    return text[:at] + new + text[at + len(old):]


def test_cli_check_and_write_round_trip(tmp_path, capsys):
    """--check exits 1 with the diff; --write restores the repo's dvc.yaml byte for byte (comments,
    blank lines, order), keeps an item's comment with it, and a second --write changes nothing."""
    for name in ("src", "stages"):
        (tmp_path / name).symlink_to(ROOT / name)
    good = (ROOT / "dvc.yaml").read_text()
    commented = _edit(good, "train_synthetic", "      - data/generated\n", "      - data/generated  # D0's objects\n")
    bad = _edit(commented, "train_synthetic", "      - src/freemask/metrics/segmentation.py\n", "")
    bad = _edit(bad, "world", "      - stages/world.py\n", "      - src/freemask/world\n      - stages/world.py\n")
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(bad)

    assert main(["--check", "--file", str(dvc_yaml)]) == 1
    out = capsys.readouterr().out
    assert "world:\n  extra, remove from deps:\n      - src/freemask/world" in out
    assert "  missing, add to deps:\n      - src/freemask/metrics/segmentation.py" in out

    assert main(["--write", "--file", str(dvc_yaml)]) == 0
    written = dvc_yaml.read_text()
    assert written == commented
    assert main(["--write", "--file", str(dvc_yaml)]) == 0
    assert dvc_yaml.read_text() == written
    assert main(["--check", "--file", str(dvc_yaml)]) == 0


def test_write_keeps_comments_with_their_items(tmp_path):
    for name in ("src", "stages"):
        (tmp_path / name).symlink_to(ROOT / name)
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(
        "stages:\n"
        "  a:\n    cmd: python stages/report.py\n    deps:\n"
        "      - data/x  # the x\n      - src/freemask/reports\n      - stages/report.py\n\n"
        "  b:\n    cmd: python stages/world.py\n    deps:\n"
        "      - stages/world.py  # eol\n      - data/y\n    # above params\n    params:\n      - world\n")
    assert main(["--write", "--file", str(dvc_yaml)]) == 0
    text = dvc_yaml.read_text()
    assert "      - src/freemask/world/spec.py\n      - data/x  # the x\n\n  b:\n" in text
    assert "      - stages/world.py  # eol\n      - src/freemask/__init__.py\n" in text
    assert "      - data/y\n    # above params\n    params:\n" in text
    assert main(["--write", "--file", str(dvc_yaml)]) == 0
    assert dvc_yaml.read_text() == text


def test_the_opt_in_stages_list_exactly_their_imports_from_their_working_folder():
    doc = yaml.safe_load((ROOT / "extras/dvc.yaml").read_text())["stages"]
    stages = {name: s.get("do", s) for name, s in doc.items()}
    assert all(s.get("wdir") == ".." for s in stages.values())  # they run from the repository root
    diffs = compare(stages, ROOT / "extras")
    assert not diffs, f"extras/dvc.yaml deps differ from the stage scripts' imports (fix: {FIX})\n{format_diff(diffs)}"
