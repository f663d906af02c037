"""One process of a test's generate run, launched as a script (plain or under torchrun).

    generate_worker.py CFG_JSON GENERATOR_DIR OUT_DIR REPORT_DIR [--kill-while-writing SHARD]

Runs ``generate_dataset`` on one torch thread and writes its return value to
``REPORT_DIR/rank<R>.json``. With ``--kill-while-writing S`` the process SIGKILLs itself halfway
through writing objects shard ``S`` (after its first sample is in the temporary file), the way
a preempted job or the OOM killer ends a run: no ``finally`` runs, no cleanup.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import torch

from freemask.data import shards
from freemask.generate.dataset import generate_dataset
from freemask.labels import toy_labels
from freemask.params import Generate


def _kill_while_writing(shard: int) -> None:
    real = shards.write_shard

    def write_shard(path, samples):
        if Path(path).name != shards.shard_name(shard) or Path(path).parent.name != "objects":
            return real(path, samples)

        def first_then_die():
            yield next(iter(samples))
            os.kill(os.getpid(), signal.SIGKILL)  # asked for the second: the first is in the tar

        return real(path, first_then_die())

    shards.write_shard = write_shard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cfg_json", type=Path)
    ap.add_argument("generator_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("report_dir", type=Path)
    ap.add_argument("--kill-while-writing", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.kill_while_writing is not None:
        _kill_while_writing(args.kill_while_writing)
    cfg = Generate.model_validate_json(args.cfg_json.read_text()).model_copy(update={"generator": str(args.generator_dir)})
    result = generate_dataset(cfg, toy_labels(), args.out_dir)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / f"rank{result['rank']}.json").write_text(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
