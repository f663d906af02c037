"""DVC remotes: one clone reproduces a pipeline and pushes its outputs and its run-cache to a remote;
fresh clones pull them and recompute nothing (README, "Sharing results through a DVC remote";
docs/remotes.md).

The pipeline is pipelines/fixtures (the smoke profiles' tiny SD checkpoint and fixture datasets, five
stages, about 20 s on 2 cores): the cheapest real one, and one whose every stage the run-cache can
hold. The remote is a local folder; every clone has its own empty DVC cache, and DVC's global, system
and site folders are temporary ones, so nothing reaches the data but the remote.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = "pipelines/fixtures/dvc.yaml"
_SPEC = yaml.safe_load((ROOT / PIPELINE).read_text())["stages"]
STAGES = {f"{PIPELINE}:{name}" for name in _SPEC}
OUTS = sorted(next(iter(o)) if isinstance(o, dict) else o for s in _SPEC.values() for o in s["outs"])

pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="clones the repository: needs a git checkout")


def _run(args: list[str], cwd: Path, env: dict) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _env(base: dict, clone: Path) -> dict:
    """The stages import the clone's own code."""
    return dict(base, PYTHONPATH=os.pathsep.join(filter(None, [str(clone / "src"), os.environ.get("PYTHONPATH")])))


def _dvc(clone: Path, base: dict, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], clone, _env(base, clone))


def _clone(src: Path, dst: Path, base: dict, remote: Path) -> Path:
    _run(["git", "clone", "-q", str(src), str(dst)], dst.parent, base)
    _dvc(dst, base, "remote", "add", "--local", "-d", "store", str(remote))  # .dvc/config.local: not committed
    return dst


def _stages(log: str, prefix: str, suffix: str) -> set[str]:
    """The stages named by DVC's log lines ``<prefix>'<stage>'<suffix>``."""
    head, tail = prefix + "'", "'" + suffix
    return {line[len(head):-len(tail)] for line in log.splitlines() if line.startswith(head) and line.endswith(tail)}


def _ran(log: str) -> set[str]:
    return _stages(log, "Running stage ", ":")


def _outputs(clone: Path) -> dict[str, str]:
    """md5 of every file of the pipeline's outputs, by path."""
    folder = (clone / PIPELINE).parent
    files = [p for out in OUTS for p in ([folder / out] if (folder / out).is_file() else (folder / out).rglob("*"))]
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in files if p.is_file()}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Clone a of this repository's HEAD, the pipeline reproduced in it (lock committed) and pushed with
    its run-cache to a local remote; returns (a, remote, env)."""
    tmp = tmp_path_factory.mktemp("remote")
    dirs = {k: tmp / k for k in ("home", "dvc_global", "dvc_system", "dvc_site")}
    for d in dirs.values():
        d.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HOME=str(dirs["home"]),
               XDG_CONFIG_HOME=str(dirs["home"] / ".config"), XDG_CACHE_HOME=str(dirs["home"] / ".cache"),
               DVC_GLOBAL_CONFIG_DIR=str(dirs["dvc_global"]), DVC_SYSTEM_CONFIG_DIR=str(dirs["dvc_system"]),
               DVC_SITE_CACHE_DIR=str(dirs["dvc_site"]), DVC_NO_ANALYTICS="1", GIT_CONFIG_NOSYSTEM="1")
    # this checkout is read with the caller's git configuration (which may be what lets git read it, as
    # safe.directory does); the clones, made here, with none
    head = _run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], ROOT, dict(os.environ)).strip()
    a, remote = tmp / "a", tmp / "store"
    _run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(a)], tmp, dict(os.environ))
    _run(["git", "checkout", "-q", "-B", "shared", head], a, env)
    _dvc(a, env, "remote", "add", "--local", "-d", "store", str(remote))

    log = _dvc(a, env, "repro", PIPELINE)
    assert _ran(log) == STAGES, log  # a fresh clone has no outputs and an empty cache
    # what the one who ran it commits: the lock (unchanged where this machine makes the committed bytes)
    if _run(["git", "status", "--porcelain"], a, env).strip():
        _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "lock"], a, env)
    _dvc(a, env, "push", "--run-cache", PIPELINE)
    assert _outputs(a) and (remote / "files").is_dir() and (remote / "runs").is_dir()
    return a, remote, env


@pytest.mark.parametrize("way", ["dvc pull, then dvc repro", "dvc repro --pull"])
def test_a_fresh_clone_gets_the_pushed_outputs_and_recomputes_nothing(pushed, tmp_path, way):
    a, remote, env = pushed
    b = _clone(a, tmp_path / "b", env, remote)
    folder = (b / PIPELINE).parent
    assert not any((folder / out).exists() for out in OUTS)  # git does not carry them
    if way == "dvc pull, then dvc repro":
        _dvc(b, env, "pull", PIPELINE)
        log = _dvc(b, env, "repro", PIPELINE)
        assert _stages(log, "Stage ", " didn't change, skipping") == STAGES, log
    else:  # each stage the lock says is unchanged pulls its missing outputs
        log = _dvc(b, env, "repro", "--pull", PIPELINE)
        assert _stages(log, "Pulling data for stage: ", "") == STAGES, log
    assert not _ran(log), log
    assert json.loads(_dvc(b, env, "status", "--json", PIPELINE)) == {}
    assert _outputs(b) == _outputs(a)
    assert not _run(["git", "status", "--porcelain"], b, env).strip()  # the lock untouched


def test_the_run_cache_restores_every_stage_of_a_clone_whose_lock_does_not_record_it(pushed, tmp_path):
    """The case the run-cache is for: the run was pushed, its lock never committed (or, in general, the
    lock does not match the stage, while a run with these deps and this command is on the remote)."""
    a, remote, env = pushed
    c = _clone(a, tmp_path / "c", env, remote)
    (c / PIPELINE).with_suffix(".lock").unlink()
    log = _dvc(c, env, "repro", "--pull", PIPELINE)
    assert not _ran(log), log
    assert _stages(log, "Stage ", " is cached - skipping run, checking out outputs") == STAGES, log
    assert _outputs(c) == _outputs(a)
    lock = (c / PIPELINE).with_suffix(".lock")
    assert yaml.safe_load(lock.read_text()) == yaml.safe_load((a / PIPELINE).with_suffix(".lock").read_text())
