"""The dataset gallery (freemask.reports.gallery, stages/gallery.py): one self-contained HTML page of
generated objects, worst filter score first, byte-identical for the same inputs, one-line errors for
bad inputs, and the page opened in headless Chromium (skipped without it, except under CI)."""
from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from freemask.active.select import scores
from freemask.data import shards
from freemask.errors import DataError
from freemask.labels import toy_labels
from freemask.params import Gallery, Train, dump_defaults
from freemask.reports.gallery import (
    UNDECIDED,
    filter_scores,
    gallery_html,
    mask_overlay,
    pick,
    read_objects,
    summary,
    write_gallery,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = toy_labels()
CLASSES = ("bird", "boat")
SCORES = [0.9, 0.2, 0.5, 0.7, 0.1, 0.95]  # by sample index: bird_00000, boat_00001, bird_00002, ...
CHROMIUM = "/usr/bin/chromium"


def _sample(i: int) -> tuple[str, dict]:
    """A 32x32 sample: a coloured box of its class on noise, its top rows undecided (255)."""
    rng = np.random.default_rng(i)
    cls = CLASSES[i % 2]
    image = rng.integers(60, 120, (32, 32, 3), dtype=np.uint8)
    image[8:20, 6:24] = (200, 40, 40) if cls == "bird" else (40, 40, 200)
    label = np.zeros((32, 32), np.uint8)
    label[8:20, 6:24] = LABELS.index(cls)
    label[7:9, 6:24] = 255
    meta = {"class": cls, "background": "sky" if cls == "bird" else "water",
            "prompt": f"a photo of a {cls} {'in' if cls == 'bird' else 'on'} the <sky & water>", "seed": i}
    return f"{cls}_{i:05d}", {"image.png": image, "label.png": label, "meta.json": meta}


@pytest.fixture
def objects(tmp_path) -> Path:
    """Six samples (three birds, three boats) in two shards."""
    d = tmp_path / "data/generated/objects"
    d.mkdir(parents=True)
    samples = [_sample(i) for i in range(6)]
    shards.write_shard(d / shards.shard_name(0), samples[:4])
    shards.write_shard(d / shards.shard_name(1), samples[4:])
    return d


def _page(objects: Path) -> str:
    return gallery_html(read_objects(objects, LABELS), SCORES, LABELS, scale=4, source="data/generated/objects")


def _card_keys(page: str) -> list[str]:
    return re.findall(r'<figure class="card" data-key="([^"]+)"', page)


# ------------------------------------------------------------------------------------- the page


def test_page_is_self_contained_with_one_card_per_sample_worst_first(objects):
    page = _page(objects)
    assert "http://" not in page and "https://" not in page
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == 12 and all(s.startswith("data:image/png;base64,") for s in srcs)  # image + overlay per card
    assert "<link" not in page and "<script src" not in page and "url(" not in page
    assert _card_keys(page) == ["bird_00004", "boat_00001", "bird_00002", "boat_00003", "bird_00000", "boat_00005"]
    assert re.findall(r'data-score="([^"]+)"', page) == ["0.100000", "0.200000", "0.500000", "0.700000", "0.900000",
                                                         "0.950000"]
    assert '<option value="">all</option><option value="bird">bird (3)</option><option value="boat">boat (3)</option>' in page
    for control in ('id="class"', 'id="min"', 'id="max"', 'id="sort"', 'id="counter"'):
        assert control in page
    assert "&lt;sky &amp; water&gt;" in page and "<sky & water>" not in page  # meta text is escaped
    assert "bird · sky · <span class=\"score\">score 0.100</span>" in page


def test_images_are_enlarged_nearest_neighbour_and_the_overlay_marks_undecided_pixels(objects):
    import base64
    import io

    page = _page(objects)
    first, second = re.findall(r'src="data:image/png;base64,([^"]+)"', page)[:2]
    image, over = (np.array(Image.open(io.BytesIO(base64.b64decode(b)))) for b in (first, second))
    members = _sample(4)[1]  # bird_00004, the worst score: the first card
    sample = members["image.png"], members["label.png"]
    assert image.shape == (128, 128, 3)
    np.testing.assert_array_equal(image, np.repeat(np.repeat(sample[0], 4, 0), 4, 1))
    np.testing.assert_array_equal(over, np.repeat(np.repeat(mask_overlay(*sample), 4, 0), 4, 1))
    expected = (0.5 * sample[0][7, 10].astype(np.float32) + 0.5 * np.array(UNDECIDED, np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(over[28, 40], expected)  # row 7 of the 32 px label is undecided
    assert 'width="128" height="128"' in page


def test_same_inputs_give_the_same_bytes(objects, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(objects, copy)
    a = gallery_html(read_objects(objects, LABELS), SCORES, LABELS, source="x")
    b = gallery_html(read_objects(copy, LABELS), SCORES, LABELS, source="x")
    assert a == b
    shuffled = read_objects(objects, LABELS)
    order = [5, 2, 0, 4, 1, 3]
    assert gallery_html([shuffled[i] for i in order], [SCORES[i] for i in order], LABELS, source="x") == a


def test_equal_scores_are_ordered_by_key(objects):
    page = gallery_html(read_objects(objects, LABELS), [0.5] * 6, LABELS)
    assert _card_keys(page) == sorted(_card_keys(page))


def test_pick_takes_classes_in_turn_and_keeps_everything_under_the_cap(objects):
    samples = read_objects(objects, LABELS)
    assert [s.key for s in pick(samples, 100)] == sorted(s.key for s in samples)
    assert [s.key for s in pick(samples, 3)] == ["bird_00000", "bird_00002", "boat_00001"]
    assert [s.key for s in pick(list(reversed(samples)), 4)] == ["bird_00000", "bird_00002", "boat_00001", "boat_00003"]


def test_summary_counts_per_class(objects):
    samples = read_objects(objects, LABELS)
    s = summary(samples, SCORES, 10, LABELS)
    assert (s["samples"], s["shown"], s["below_0.5"], s["empty_masks"]) == (10, 6, 2, 0)
    assert s["per_class"]["bird"] == {"shown": 3, "score_mean": 0.5, "score_median": 0.5, "score_min": 0.1,
                                      "below_0.5": 1}
    assert s["per_class"]["car"] == {"shown": 0}


# ------------------------------------------------------------------- with a segmenter, and the stage


def _tiny_segmenter(path: Path) -> Path:
    from freemask.segmenters.mask2former import _save_atomically, build_model

    cfg = Train(threads=1, input_size=32, patch_size=2, steps=1)
    _save_atomically(build_model(len(LABELS.names), cfg), {"note": "test"}, path)
    return path


def test_write_gallery_scores_with_the_segmenter_and_is_deterministic(objects, tmp_path):
    from freemask.segmenters.mask2former import load_segmenter, predict

    seg = _tiny_segmenter(tmp_path / "models/segmenter_synthetic")
    cfg = Gallery(threads=1, samples=4, scale=2)
    a = write_gallery(objects, seg, tmp_path / "a/gallery.html", LABELS, cfg)
    b = write_gallery(objects, seg, tmp_path / "b/gallery.html", LABELS, cfg)
    page = (tmp_path / "a/gallery.html").read_text()
    assert page.encode() == (tmp_path / "b/gallery.html").read_bytes() and a == b
    assert (a["samples"], a["shown"], a["html_bytes"]) == (6, 4, len(page.encode()))
    assert not list((tmp_path / "a").glob("*.tmp"))
    picked = pick(read_objects(objects, LABELS), 4)
    model = load_segmenter(seg)
    expected = scores(predict(model, np.stack([s.image for s in picked])), np.stack([s.label for s in picked]),
                      [LABELS.index(s.cls) for s in picked])
    np.testing.assert_array_equal(filter_scores(model, picked, LABELS), expected)
    by_key = {s.key: f"{v:.6f}" for s, v in zip(picked, expected)}
    assert dict(re.findall(r'data-key="([^"]+)" data-class="[^"]+" data-score="([^"]+)"', page)) == by_key
    assert 'width="64" height="64"' in page


def _params(cwd: Path) -> None:
    data = dump_defaults()
    data["gallery"]["threads"] = 1
    (cwd / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _stage_here(monkeypatch, capsys, cwd: Path) -> tuple[int, str]:
    """Run stages/gallery.py as ``__main__`` in this process from ``cwd``: its exit status (0 when it
    returns) and stderr."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FREEMASK_PARAMS", str(cwd / "params.yaml"))
    monkeypatch.setattr(sys, "argv", [str(ROOT / "stages/gallery.py")])
    capsys.readouterr()
    code = 0
    try:
        runpy.run_path(str(ROOT / "stages/gallery.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_stage_writes_the_page_and_its_counts(objects, tmp_path, monkeypatch, capsys):
    import json

    _params(tmp_path)
    _tiny_segmenter(tmp_path / "models/segmenter_synthetic")
    code, err = _stage_here(monkeypatch, capsys, tmp_path)
    assert code == 0, err
    details = json.loads((tmp_path / "metrics/details/gallery.json").read_text())
    assert (details["samples"], details["shown"]) == (6, 6)
    assert len(_card_keys((tmp_path / "reports/gallery.html").read_text())) == 6


def test_a_damaged_shard_is_one_line_naming_it(objects, tmp_path, monkeypatch, capsys):
    shard = objects / shards.shard_name(1)
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(DataError, match=re.escape(str(shard))) as err:
        read_objects(objects, LABELS)
    assert "\n" not in str(err.value)

    _params(tmp_path)
    code, err = _stage_here(monkeypatch, capsys, tmp_path)  # before any segmenter is needed
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "shard-00001.tar" in lines[0], err


@pytest.mark.parametrize("meta, problem", [({"background": "sky"}, "meta.json needs a class"),
                                           ({"class": "dragon", "background": "sky"}, "meta.json needs a class"),
                                           ({"class": "bird"}, "and a background")])
def test_a_sample_without_a_known_class_or_background_names_its_shard(tmp_path, meta, problem):
    key, members = _sample(0)
    shards.write_shard(tmp_path / shards.shard_name(0), [(key, {**members, "meta.json": meta})])
    with pytest.raises(DataError, match=problem) as err:
        read_objects(tmp_path, LABELS)
    assert str(tmp_path / shards.shard_name(0)) in str(err.value) and "bird_00000" in str(err.value)


def test_a_missing_member_or_an_image_of_another_size_names_its_shard(tmp_path):
    key, members = _sample(0)
    shards.write_shard(tmp_path / "a" / shards.shard_name(0), [(key, {k: v for k, v in members.items() if k != "meta.json"})])
    with pytest.raises(DataError, match=r"shard-00000\.tar.*no meta\.json"):
        read_objects(tmp_path / "a", LABELS)
    small = {**members, "image.png": members["image.png"][:16, :16], "label.png": members["label.png"][:16, :16]}
    shards.write_shard(tmp_path / "b" / shards.shard_name(0), [(key, members), ("bird_00002", small)])
    odd = r"shard-00000\.tar: sample 'bird_00002': image.png is 16x16, the samples before it 32x32"
    with pytest.raises(DataError, match=odd):
        read_objects(tmp_path / "b", LABELS)


def test_missing_segmenter_is_a_clear_error(objects, tmp_path, monkeypatch, capsys):
    _params(tmp_path)
    code, err = _stage_here(monkeypatch, capsys, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: no saved segmenter at models/segmenter_synthetic")


# ---------------------------------------------------------------------------------- in a browser


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``args``; skipped when it is not installed, a failure under CI (``CI`` set)."""
    if not Path(CHROMIUM).exists():  # CHROMIUM read at call time: the test below replaces it
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing and CI is set: CI must run the browser test (.ci/run installs it)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=2000", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_without_chromium_the_browser_test_skips_but_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _chromium(tmp_path, "--version")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        _chromium(tmp_path, "--version")


def test_the_page_renders_and_its_script_filters_in_chromium(objects, tmp_path):
    page = tmp_path / "gallery.html"
    page.write_text(_page(objects))

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1000,700", f"--screenshot={shot}", page.as_uri())
    pixels = np.array(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (700, 1000)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100 and pixels.std() > 20  # text and images, not blank

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert len(_card_keys(dom)) == 6
    for control in ('<select id="class">', 'id="min"', 'id="max"', '<select id="sort">'):
        assert control in dom
    assert 'id="counter">6 of 6 samples shown<' in dom  # written by the script

    # the controls' start values from the URL fragment: boats scoring at most 0.8, best first
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#class=boat&max=0.8&sort=best").stdout
    assert 'id="counter">2 of 6 samples shown<' in dom
    cards = re.findall(r'<figure class="card" data-key="([^"]+)"[^>]*?( hidden="")?>', dom)
    assert [k for k, hidden in cards if not hidden] == ["boat_00003", "boat_00001"]
    assert [k for k, _ in cards] == ["boat_00005", "bird_00000", "boat_00003", "bird_00002", "boat_00001", "bird_00004"]
