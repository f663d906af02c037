"""The Adaptive Matching Thesaurus (eq. 3): whole-word matching, the four corpus formats, its
accuracy against the world's priors, the stage and the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from freemask import thesaurus as th
from freemask.cli import app
from freemask.params import dump_defaults
from freemask.world.captions import caption_corpus, implied_thesaurus
from freemask.world.render import sample_layout
from freemask.world.spec import BACKGROUNDS, CLASSES

ROOT = Path(__file__).resolve().parents[1]
VOCAB = th.Vocabulary(objects={"cat": ("cat", "kitten"), "boat": ("boat",), "bird": ("bird",)},
                      backgrounds={"sky": ("sky",), "room": ("room", "living room"), "water": ("water", "lake")})


def _mentions(caption: str) -> set[str]:
    """The classes of VOCAB that one caption mentions."""
    words = {**VOCAB.objects, **VOCAB.backgrounds}
    row = pl.DataFrame({"caption": [caption]}).select(th.mentions(w).alias(c) for c, w in words.items()).row(0, named=True)
    return {c for c, hit in row.items() if hit}


@pytest.mark.parametrize("caption, expected", [
    ("a cat in the sky", {"cat", "sky"}),
    ("A CAT in the SKY", {"cat", "sky"}),  # case
    ("two cats and kittens under the skies", {"cat", "sky"}),  # regular plurals, -y -> -ies
    ("a category of skylines", set()),  # a substring is not a word
    ("the boathouse by the lakeside", set()),
    ("a sky-blue boat", {"boat"}),  # a hyphenated compound is one word
    ("the bird's nest in the living  room", {"bird", "room"}),  # possessive; a phrase across any white space
    ("boat,sky;lake.", {"boat", "sky", "water"}),  # punctuation separates words
])
def test_a_class_is_mentioned_by_whole_words_only(caption, expected):
    assert _mentions(caption) == expected


def test_r_is_the_share_of_a_backgrounds_captions_that_mention_the_object():
    caps = ["a cat in the sky", "the sky", "a boat on the lake", "a cat and a boat on the lake", "a bird", None]
    t = th.table(th.count(pl.LazyFrame({"caption": caps}, schema={"caption": pl.String}), VOCAB))
    r = th.lookup(t)
    assert r["sky"] == {"cat": 0.5, "boat": 0.0, "bird": 0.0}
    assert r["water"] == {"cat": 0.5, "boat": 1.0, "bird": 0.0}
    assert "room" not in r and t.filter(pl.col("background") == "room")["R"].is_null().all()  # no caption: no R
    assert th.allowed(t, "water", 0.4) == ["cat", "boat"] and th.allowed(t, "water", 0.5) == ["boat"]


def _corpus_files(tmp_path: Path, captions: list[str]) -> dict[str, Path]:
    files = {"txt": tmp_path / "c.txt", "jsonl": tmp_path / "c.jsonl", "coco": tmp_path / "captions_val.json",
             "parquet": tmp_path / "laion"}
    files["txt"].write_text("\n".join(captions) + "\n")
    files["jsonl"].write_text("".join(json.dumps({"caption": c, "url": f"u{i}"}) + "\n" for i, c in enumerate(captions)))
    files["coco"].write_text(json.dumps({"images": [{"id": i} for i in range(len(captions))],
                                         "annotations": [{"image_id": i, "id": 10 + i, "caption": c}
                                                         for i, c in enumerate(captions)]}))
    files["parquet"].mkdir()
    half = len(captions) // 2  # two LAION-style metadata shards, the caption column named TEXT
    for k, part in enumerate((captions[:half], captions[half:])):
        pl.DataFrame({"TEXT": part, "similarity": [0.3] * len(part)}).write_parquet(files["parquet"] / f"{k:05d}.parquet")
    return files


def test_the_same_captions_give_the_same_table_in_every_format(tmp_path):
    files = _corpus_files(tmp_path, caption_corpus(seed=1, n=600, max_objects=3))
    tables = {fmt: th.build(path, th.toy_vocabulary(), field="TEXT" if fmt == "parquet" else "caption")
              for fmt, path in files.items()}
    for fmt, t in tables.items():
        assert t.equals(tables["txt"]), fmt
    assert int(tables["txt"]["n_background"].unique().sum()) <= 600 and tables["txt"]["n_both"].sum() > 0


def test_it_recovers_the_r_the_worlds_priors_imply():
    """20k captions: each R is a share of ~3000-5000 captions of its background, so its sampling sd is
    at most sqrt(0.25 / 3000) = 0.009; 0.035 is about 4 sd. Pairs the world never shows are exactly 0."""
    r = th.lookup(th.table(th.count(pl.LazyFrame({"caption": caption_corpus(seed=3, n=20000, max_objects=3)}),
                                    th.toy_vocabulary())))
    implied = implied_thesaurus(3)
    errors = [abs(r[b][o] - implied[b][o]) for b in BACKGROUNDS for o in CLASSES]
    assert max(errors) < 0.035
    assert all(r[b][o] == 0 for b in BACKGROUNDS for o in CLASSES if implied[b][o] == 0)


def test_the_implied_r_is_what_the_worlds_layout_sampler_draws():
    """The closed form against the sampler it describes (not the caption writer, not the matcher)."""
    rng = np.random.default_rng(0)
    implied = implied_thesaurus(3)
    for b in ("grass", "floor"):
        layouts = [{o.cls for o in sample_layout(rng, b, int(rng.integers(1, 4)))} for _ in range(6000)]
        for o in CLASSES:
            assert np.mean([o in s for s in layouts]) == pytest.approx(implied[b][o], abs=0.03)


def test_a_vocabulary_file_names_its_problem(tmp_path):
    good = tmp_path / "v.yaml"
    good.write_text(yaml.safe_dump({"objects": {"potted plant": ["houseplant"]}, "backgrounds": {"room": []}}))
    v = th.load_vocabulary(good)
    assert v.objects == {"potted plant": ("potted plant", "houseplant")} and v.backgrounds == {"room": ("room",)}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"objects": {"cat": "kitten"}, "backgrounds": {"room": []}}))
    with pytest.raises(th.DataError, match=r"bad.yaml: objects.cat: expected a list of words"):
        th.load_vocabulary(bad)


def test_cli_writes_the_table_and_heatmap_and_names_bad_corpora(tmp_path):
    files = _corpus_files(tmp_path, caption_corpus(seed=2, n=100, max_objects=3))
    cli = CliRunner()
    res = cli.invoke(app, ["thesaurus", str(files["coco"]), "--out", str(tmp_path / "t.csv"),
                           "--heatmap", str(tmp_path / "t.png")])
    assert res.exit_code == 0, res.output
    assert th.read_csv(tmp_path / "t.csv").equals(th.build(files["txt"], th.toy_vocabulary()).with_columns(pl.col("R").round(6)))
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "broken.json").write_text(json.dumps({"images": []}))
    cases = [([str(tmp_path / "nope.txt")], "nope.txt"),
             ([str(files["jsonl"]), "--field", "TEXT"], "c.jsonl"),  # no such column
             ([str(tmp_path / "broken.json")], "not a COCO-captions file"),
             ([str(files["txt"]), "--format", "csv"], "--format 'csv'")]
    for args, culprit in cases:
        res = cli.invoke(app, ["thesaurus", *args, "--out", str(tmp_path / "x.csv")])
        assert res.exit_code == 2 and culprit in res.output and "Traceback" not in res.output, (args, res.output)
    assert not (tmp_path / "x.csv").exists()


def test_the_stage_writes_its_outputs_and_its_error_against_the_priors(tmp_path):
    (tmp_path / "data/world").mkdir(parents=True)
    (tmp_path / "data/world/captions.txt").write_text("\n".join(caption_corpus(seed=0, n=3000, max_objects=3)) + "\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(dump_defaults()))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), FREEMASK_PARAMS=str(tmp_path / "params.yaml"))
    r = subprocess.run([sys.executable, str(ROOT / "stages/thesaurus.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    details = json.loads((tmp_path / "metrics/details/thesaurus.json").read_text())
    head = json.loads((tmp_path / "metrics/thesaurus.json").read_text())
    assert details["captions"] == 3000 and len(details["abs_error_vs_world_priors"]) == len(CLASSES) * len(BACKGROUNDS)
    assert head["max_abs_error_vs_world_priors"] == max(details["abs_error_vs_world_priors"].values()) < 0.1
    first = (tmp_path / "data/thesaurus/thesaurus.csv").read_bytes()
    assert first.startswith(b"object,background,n_background,n_both,R\n")
    assert (tmp_path / "reports/figures/thesaurus.png").exists()

    (tmp_path / "data/world/captions.txt").unlink()
    r = subprocess.run([sys.executable, str(ROOT / "stages/thesaurus.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "captions.txt" in r.stderr
    assert (tmp_path / "data/thesaurus/thesaurus.csv").read_bytes() == first  # nothing written over


def test_the_plan_prompts_each_class_on_the_backgrounds_the_thesaurus_allows():
    """generate.backgrounds=thesaurus: a class's prompts go to backgrounds with R(o, b) above the
    threshold, in proportion to the captions that mention both; a class with none is named."""
    from freemask.generate.plan import plan_objects
    from freemask.labels import toy_labels, with_background_weights
    from freemask.params import Generate

    t = th.table(th.count(pl.LazyFrame({"caption": caption_corpus(seed=0, n=20000, max_objects=3)}),
                          th.toy_vocabulary()))
    labels = toy_labels()
    w = th.background_weights(t, list(labels.classes), list(labels.backgrounds), 0.05)
    r = th.lookup(t)
    both = {(x["object"], x["background"]): x["n_both"] for x in t.iter_rows(named=True)}
    for o in labels.classes:
        for b, weight in zip(labels.backgrounds, w[o]):
            assert weight == (both[o, b] if r[b][o] > 0.05 else 0)
    plan = plan_objects(Generate(per_class=200), with_background_weights(labels, w))
    assert all(r[p.background][p.cls] > 0.05 for p in plan)
    balloons = [p.background for p in plan if p.cls == "balloon"]
    assert set(balloons) == {"sky", "floor"} and balloons.count("sky") > balloons.count("floor")
    with pytest.raises(ValueError, match=r"no background has R\(o, b\) > 0.9 for .*balloon"):
        th.background_weights(t, list(labels.classes), list(labels.backgrounds), 0.9)
