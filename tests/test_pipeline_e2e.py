"""The whole DVC pipeline, end to end, in a CI-sized configuration (tiny models, tiny data)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freemask.params import dump_defaults

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "world": {"generator_train_size": 64, "real_train_size": 24, "real_val_size": 12, "captions": 50, "shard_size": 32},
    "train_generator": {"steps": 3, "batch_size": 4, "channels": [8, 16, 16], "text_hidden": 16, "checkpoint_every": 2},
    "generate": {"per_class": 2, "scenes_per_background": 1, "steps": 2, "batch_size": 8, "shard_size": 8},
    # the whole editing path: learned placement, RAIN harmonization, occluded objects dropped
    "compose": {"n_images": 10, "shard_size": 4, "placement": "learned", "harmonize": "rain", "max_overlap": 0.3,
                "min_visible": 0.2},
    "placement": {"canvas": 16, "width": 8, "features": 4, "n_scales": 6, "examples": 24, "positives": 4,
                  "negatives": 4, "prior_samples": 10, "teacher_steps": 2, "steps": 3, "batch_size": 4, "val_scenes": 1},
    "train": {"steps": 4, "batch_size": 4, "eval_every": 2},
    "assess": {"classifier_steps": 3, "renders_per_class": 1, "mask_quality_per_class": 1},
    "affinity_net": {"steps": 3, "batch_size": 4},
    "harmonize": {"steps": 3, "batch_size": 4, "width": 4, "train_pairs": 16, "val_pairs": 8},
    "report": {"grid_samples": 8},
    "active": {"per_class": 1, "round_steps": 2},
    "finetune": {"real_images": 6, "steps": 2, "eval_every": 1},
}


def _run(args, cwd, env):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture
def tiny_repo(tmp_path):
    for item in ("dvc.yaml", "stages", "src", "metrics/spread.json", "metrics/ablations.json",
                 "metrics/retention.json"):  # committed measurements
        src = ROOT / item
        (tmp_path / item).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    params = dump_defaults()
    for section, values in TINY.items():
        params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    _run(["git", "init", "-q"], tmp_path, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], tmp_path, env)
    return tmp_path, env


def test_dvc_repro_runs_every_stage_and_is_then_up_to_date(tiny_repo):
    repo, env = tiny_repo
    _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    ev = json.loads((repo / "metrics/eval.json").read_text())
    assert set(ev) == {"val", "val_raw", "fresh_world_val"}
    assert all(0 <= ev[s]["synthetic_mIoU"] <= 1 and 0 <= ev[s]["upper_bound_mIoU"] <= 1 for s in ev)
    details = json.loads((repo / "metrics/details/eval.json").read_text())
    assert set(details["val"]["synthetic"]["per_class"]) >= {"background", "bird", "chair"}
    assert details["fresh_world_val"]["synthetic"]["n_images"] == TINY["world"]["real_val_size"]
    q = json.loads((repo / "metrics/details/generator_quality.json").read_text())
    assert 0 <= q["attention_iou_vs_truth_on_noised_renders"]["mean"] <= 1 and q["n_generated"] == 16
    assert set(json.loads((repo / "metrics/generator_quality.json").read_text())) == {
        "classifier_accuracy", "mask_iou_vs_oracle", "mask_iou_vs_truth", "best_fixed_threshold_iou_vs_oracle"}
    assert (repo / "reports/tables.md").read_text().startswith("# freemask")
    for png in ("samples.png", "figures/per_class_iou.png", "figures/training_curves.png"):
        assert (repo / "reports" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    rounds = json.loads((repo / "metrics/details/filter_rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1] and 0 <= rounds[1]["val_mIoU"] <= 1
    assert set(json.loads((repo / "metrics/filter.json").read_text())) >= {"final_val_mIoU", "auc_bad_masks",
                                                                           "catch_precision", "catch_recall"}
    tables = (repo / "reports/tables.md").read_text()
    assert "## Filtering (Algorithm 1)" in tables
    finetune = json.loads((repo / "metrics/details/finetune.json").read_text())
    assert finetune["real_images"] == 6 and set(finetune["val"]) == {"synthetic_plus_real", "real_subset"}
    assert set(finetune["val"]["real_subset"]["table3"]["per_group"]) == {"vehicle", "disc"}
    for section in ("### Table 2", "### Table 3", "### Table 4", "### Figure 9"):
        assert section in tables, section
    assert (repo / "reports/figures/retention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gallery = json.loads((repo / "metrics/details/gallery.json").read_text())
    assert gallery["samples"] == gallery["shown"] == 16  # every generated object (2 per class)
    assert (repo / "reports/gallery.html").read_text().startswith("<!DOCTYPE html>")
    lock1 = (repo / "dvc.lock").read_text()
    out = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert "up to date" in out.lower() or "didn't change" in out.lower()
    assert (repo / "dvc.lock").read_text() == lock1

    # an evaluate-only change reruns evaluate and what follows it, nothing before
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["batch_size"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # report follows only if the metrics changed (a batch size must not change them)
    assert "evaluate" in ran and ran <= {"evaluate", "report"}, out


def test_bad_param_fails_at_once_naming_the_key(tiny_repo):
    repo, env = tiny_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["world"]["real_val_size"] = -3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "world.real_val_size" in r.stdout + r.stderr
    assert not (repo / "data/world").exists()
