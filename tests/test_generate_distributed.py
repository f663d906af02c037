"""Generation in other processes: split by rank under torchrun it gives the single process's
bytes, and a run killed outright (SIGKILL: no cleanup) resumes to them."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from freemask.distributed import Ranks, process_group, ranks_from_env
from freemask.generate.dataset import generate_dataset
from freemask.labels import toy_labels

WORKER = Path(__file__).with_name("generate_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def _digest(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict[str, str]:
    """The test process's environment without any launcher variables, on one thread, with
    gloo bound to the loopback interface (no network beyond localhost)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}}
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def _torchrun(nproc: int, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), *map(str, args)]
    r = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def test_two_gloo_processes_write_the_single_process_bytes(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir, cfg_json = tmp_path / "gen", tmp_path / "cfg.json"
    tiny_generator.save(gdir)
    cfg_json.write_text(tiny_generate_cfg.model_dump_json())
    single = generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "single")
    assert single["written"] == {"objects": [0, 1, 2], "scenes": [0]}  # 16 objects in shards of 7, 5 scenes

    _torchrun(2, cfg_json, gdir, tmp_path / "multi", tmp_path / "reports")

    reports = {r: json.loads((tmp_path / "reports" / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert [reports[r]["world_size"] for r in (0, 1)] == [2, 2]
    # shard s is rank s % 2's work, and no rank wrote another's shard
    assert reports[0]["written"] == {"objects": [0, 2], "scenes": [0]}
    assert reports[1]["written"] == {"objects": [1], "scenes": []}
    a, b = _digest(tmp_path / "single"), _digest(tmp_path / "multi")
    assert sorted(a) == sorted(b)
    # bit for bit on any one CPU: a shard is cut into the same batches whichever process makes it, so the
    # same kernels run on the same shapes (batch mates change a sample's last bits: see test_attention)
    assert [name for name in a if a[name] != b[name]] == []


def test_ranks_from_env():
    assert ranks_from_env({}) == Ranks(0, 1)
    assert ranks_from_env({"RANK": "1", "WORLD_SIZE": "3"}) == Ranks(1, 3)
    assert [s for s in range(7) if Ranks(1, 3).owns(s)] == [1, 4]
    with pytest.raises(ValueError, match="WORLD_SIZE is set but RANK is not"):
        ranks_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match=r"RANK='one' is not an integer"):
        ranks_from_env({"RANK": "one", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match=r"RANK=2 is outside \[0, WORLD_SIZE=2\)"):
        ranks_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE=0 must be at least 1"):
        ranks_from_env({"RANK": "0", "WORLD_SIZE": "0"})


def test_process_group_uses_an_initialised_group_and_leaves_it_open(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "5")  # ignored: the open group is the authority
    monkeypatch.setenv("WORLD_SIZE", "9")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with process_group() as ranks:
            assert ranks == Ranks(0, 1)
            ranks.barrier()
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_process_group_without_launcher_is_one_process_and_opens_nothing(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group() as ranks:
        assert ranks == Ranks(0, 1) and not dist.is_initialized()


def test_killed_generate_resumes_to_the_uninterrupted_bytes(tmp_path, tiny_generator, tiny_generate_cfg):
    gdir, cfg_json, out = tmp_path / "gen", tmp_path / "cfg.json", tmp_path / "out"
    tiny_generator.save(gdir)
    cfg_json.write_text(tiny_generate_cfg.model_dump_json())
    cmd = [sys.executable, str(WORKER), cfg_json, gdir, out, tmp_path / "reports", "--kill-while-writing", "1"]
    r = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == -signal.SIGKILL, f"worker was not killed ({r.returncode}):\n{r.stderr[-5000:]}"
    # the killed writer's temporary file stays behind, under a name no reader takes for a shard
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["objects/_fingerprint.txt", "objects/shard-00000.tar", "objects/shard-00001.tar.tmp",
                     "scenes/_fingerprint.txt"]
    first = (out / "objects" / "shard-00000.tar").stat()

    result = generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), out)
    assert result["written"] == {"objects": [1, 2], "scenes": [0]}
    again = (out / "objects" / "shard-00000.tar").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    generate_dataset(tiny_generate_cfg.model_copy(update={"generator": str(gdir)}), toy_labels(), tmp_path / "whole")
    assert _digest(out) == _digest(tmp_path / "whole")  # the .tmp was overwritten and renamed into place
