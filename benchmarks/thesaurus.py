"""Benchmark: captions per minute that the thesaurus counts, on a synthetic corpus.

The corpus: ``--base`` distinct captions from the toy world's caption writer, each given a random
number suffix so no two lines are alike, repeated to ``--captions`` lines, written once as a text
file and as parquet shards. Each format is counted ``--repeats`` times (``thesaurus.count``, the
stage's code path, reading from disk every time); the median is reported.

Not part of the test suite: timings on a loaded machine mean nothing. Run it on an idle one:

    PYTHONPATH=src python benchmarks/thesaurus.py                       # 10 million captions
    PYTHONPATH=src python benchmarks/thesaurus.py --captions 200000     # smoke run

Goal (reported, never enforced): at least 10 million captions per minute on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from freemask import thesaurus as th
from freemask.world.captions import caption_corpus

GOAL_PER_MINUTE = 10_000_000


def write_corpus(folder: Path, n: int, base: int, shard: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    distinct = pl.Series("caption", caption_corpus(seed=0, n=base, max_objects=3))
    idx = pl.Series(np.arange(n) % base)
    captions = pl.DataFrame({"caption": distinct.gather(idx)}).with_columns(
        pl.concat_str([pl.col("caption"), pl.lit(" #"), pl.Series(rng.integers(0, 10**9, n)).cast(pl.String)]))
    txt = folder / "captions.txt"
    txt.write_text("\n".join(captions["caption"].to_list()) + "\n")
    shards = folder / "parquet"
    shards.mkdir()
    for k, start in enumerate(range(0, n, shard)):
        captions.slice(start, shard).rename({"caption": "TEXT"}).write_parquet(shards / f"{k:05d}.parquet")
    return {"txt": txt, "parquet": shards}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=10_000_000)
    ap.add_argument("--base", type=int, default=100_000, help="distinct captions from the world's writer")
    ap.add_argument("--shard", type=int, default=1_000_000, help="captions per parquet shard")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = ap.parse_args()
    vocab = th.toy_vocabulary()
    results = {"captions": args.captions, "cpus": os.cpu_count(), "polars_threads": pl.thread_pool_size(),
               "machine": platform.processor() or platform.machine(), "polars": pl.__version__,
               "load_average_start": os.getloadavg()[0], "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_corpus(Path(tmp), args.captions, args.base, args.shard)
        for fmt, path in files.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                counts = th.count(th.scan_captions(path, fmt, "TEXT" if fmt == "parquet" else "caption"), vocab)
                times.append(time.perf_counter() - t0)
                assert counts["captions"] == args.captions
            med = statistics.median(times)
            results["formats"][fmt] = {"seconds": [round(t, 3) for t in times], "median_s": round(med, 3),
                                       "captions_per_minute": round(args.captions / med * 60)}
            print(f"{fmt:8s} {args.captions} captions: median {med:.2f} s over {args.repeats} "
                  f"({args.captions / med * 60 / 1e6:.1f} M captions/min; goal {GOAL_PER_MINUTE / 1e6:.0f} M)")
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average {results['load_average_start']:.2f} at start, {results['load_average_end']:.2f} at end")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
