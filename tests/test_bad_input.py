"""Bad input ends with one line naming the culprit (file, dotted params key, class) and exit status 2.

Each case runs a real stage entry point (``stages/*.py``, through ``run_stage``) or the CLI on tiny
inputs in a temporary folder and checks the exit status, that the error is one ``error:`` line
naming the culprit, and that there is no traceback: in a subprocess (progress bars off, so stderr
is that line alone), or in this process where the stage would import diffusers or transformers
(seconds in a fresh process), with ``runpy`` (the error then the last line after the bars).
"""
from __future__ import annotations

import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from freemask.data import shards, voc
from freemask.errors import DataError
from freemask.params import ParamsError, dump_defaults, validate

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "stages"
LABEL = np.zeros((8, 8), np.uint8)
LABEL[2:6, 2:6] = 1  # a bird


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               FREEMASK_PARAMS=str(cwd / "params.yaml"), TQDM_DISABLE="1", PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _stage(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return _run(cwd, str(STAGES / f"{name}.py"), *args)


def _one_error_line(r: subprocess.CompletedProcess, *names: str) -> str:
    """The run ended with status 2 and stderr is one ``error:`` line naming every one of ``names``."""
    assert r.returncode == 2, f"status {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def _stage_here(monkeypatch, capsys, cwd: Path, name: str, *args: str) -> str:
    """Run ``stages/<name>.py`` as ``__main__`` in this process from ``cwd``; it must exit with status 2
    and its last stderr line be the only ``error:`` line. Returns that line."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FREEMASK_PARAMS", str(cwd / "params.yaml"))
    monkeypatch.setattr(sys, "argv", [str(STAGES / f"{name}.py"), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # any other exception fails the test with its traceback
        runpy.run_path(str(STAGES / f"{name}.py"), run_name="__main__")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and "Traceback" not in err, err[-3000:]
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


def _params(cwd: Path, **sections) -> dict:
    data = dump_defaults()
    for section in ("generate", "train", "evaluate", "train_generator"):
        data[section]["threads"] = 1
    for section, values in sections.items():
        data[section].update(values)
    (cwd / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return data


@pytest.fixture
def repo(tmp_path) -> Path:
    """A working folder laid out as the repository (dvc.yaml names the stage that writes each output)."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    _params(tmp_path)
    return tmp_path


def _object_shard(path: Path, n: int = 3, label: np.ndarray = LABEL) -> None:
    rng = np.random.default_rng(0)
    shards.write_shard(path, [(f"bird_{i:05d}", {"image.png": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                                                 "label.png": label, "meta.json": {"background": "grass"}})
                              for i in range(n)])


def _voc_split(root: Path, split: str, labels: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for i, label in labels.items():
        voc.write_sample(root, i, rng.integers(0, 255, (*label.shape, 3), dtype=np.uint8), label)
    voc.write_split(root, split, list(labels))


# ---------------------------------------------------------------------------- the error type


def test_data_error_is_one_line_with_key_line_and_hint():
    err = DataError("a/b.txt", "bad\nvalue", "re-make it", line=3, key="x.y")
    assert str(err) == "x.y: a/b.txt line 3: bad value; re-make it"
    assert isinstance(err, ValueError)
    assert json.dumps(str(err))  # plain text
