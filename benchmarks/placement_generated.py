"""Benchmark: placement plausibility of the toy generator's own cut-outs (imperfect masks, generated
pixels), with the committed placement model, for the learned, prior and random modes.

Each generated object of ``data/generated/objects`` (the `generate` stage's output) is placed once
into a val scene of its class (a background-only render of a background where the class occurs,
``train_placement.make_example``); the world's own prior judges the placement
(``world.placement.plausible_box``). ``benchmarks/placement.py`` measures the same on clean renders.

    PYTHONPATH=src python benchmarks/placement_generated.py --out benchmarks/results/placement_generated_<date>.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from freemask.compose.placement import MODES, load_placement, propose
from freemask.compose.scenes import load_cutouts
from freemask.compose.train_placement import KIND_VAL, make_example
from freemask.params import load
from freemask.world.placement import plausible_box
from freemask.world.spec import CLASSES

VAL_SEED = 99
SCENES_PER_CLASS = 5


def run(objects: Path, model_dir: Path, params: Path) -> dict:
    p = load(params)
    model, cuts = load_placement(model_dir), load_cutouts(objects)
    judged = {m: {c: [] for c in CLASSES} for m in MODES}
    for i, cut in enumerate(cuts):
        cls = CLASSES[cut.label - 1]
        scene = make_example(VAL_SEED, KIND_VAL, CLASSES.index(cls) + len(CLASSES) * (i % SCENES_PER_CLASS), p.placement).scene
        for m in MODES:
            box = propose(m, cls, scene, cut, np.random.default_rng(i), model=model, cfg=p.placement,
                          min_size=p.compose.min_size, max_size=p.compose.max_size)
            judged[m][cls].append(bool(box) and plausible_box(cls, *box))
    return {"objects": len(cuts), "modes": {m: {"all": round(float(np.mean(sum(r.values(), []))), 4),
                                                "per_class": {c: round(float(np.mean(v)), 4) for c, v in r.items()}}
                                            for m, r in judged.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=Path, default=Path("data/generated/objects"))
    ap.add_argument("--model", type=Path, default=Path("models/placement"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = run(args.objects, args.model, args.params)
    text = json.dumps(res, indent=2) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
