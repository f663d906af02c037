import numpy as np

from freemask.data import voc
from freemask.world import captions, render, spec
from freemask.world.build import build_world, generator_sample, real_scene


def test_scene_rendering_is_deterministic_and_labels_match_objects(tiny_world):
    a_img, a_lab, a_meta = real_scene(tiny_world, 2, 5)
    b_img, b_lab, b_meta = real_scene(tiny_world, 2, 5)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab) and a_meta == b_meta
    present = {spec.CLASSES[i - 1] for i in np.unique(a_lab) if i > 0}
    assert present <= set(a_meta["classes"])


def test_newer_object_overwrites_occluded_label_pixels(rng):
    R = 32
    first = render.PlacedObject("ball", 0.5, 0.5, 0.5)
    second = render.PlacedObject("car", 0.5, 0.5, 0.5)
    img = render.render_background(rng, "grass", R)
    label = np.zeros((R, R), np.uint8)
    m1 = render.paint_object(img, label, rng, first)
    m2 = render.paint_object(img, label, rng, second)
    assert (label[m2] == spec.class_index("car")).all()
    assert (label[m1 & ~m2] == spec.class_index("ball")).all()
    assert (m1 & m2).any()


def test_every_class_and_background_renders_something(rng):
    for bg in spec.BACKGROUNDS:
        for cls in spec.CLASSES:
            img, lab = render.render_scene(rng, bg, [render.single_object_layout(rng, cls)], 32)
            assert img.shape == (32, 32, 3) and 0 <= img.min() and img.max() <= 1
            assert (lab == spec.class_index(cls)).sum() >= 8, (bg, cls)


def test_placement_prior_ground_objects_grow_towards_the_viewer(rng):
    near = [render.place(rng, "car") for _ in range(300)]
    ys = np.array([o.cy for o in near])
    sizes = np.array([o.size for o in near])
    assert np.corrcoef(ys, sizes)[0, 1] > 0.5
    birds = np.array([render.place(rng, "bird").cy for _ in range(300)])
    assert birds.mean() < ys.mean()


def test_lighting_differs_by_scene(rng):
    base = np.full((8, 8, 3), 0.5, np.float32)
    floor = render.apply_lighting(base, "floor", rng, jitter=0).mean(axis=(0, 1))
    sky = render.apply_lighting(base, "sky", rng, jitter=0).mean(axis=(0, 1))
    assert floor[0] > floor[2] and sky[2] > sky[0]


def test_caption_corpus_has_synonyms_plurals_and_cooccurrence():
    corpus = captions.caption_corpus(0, 3000, 3)
    text = " ".join(corpus)
    for w in ("airplane", "boats", "lake", "street", "two"):
        assert f" {w} " in f" {text} ", w
    boat_lines = [c for c in corpus if any(f" {w}" in f" {c}" for w in spec.OBJECT_WORDS["boat"])]
    water = sum(any(f" {w}" in f" {c}" for w in spec.BACKGROUND_WORDS["water"]) for c in boat_lines)
    assert water / len(boat_lines) > 0.9  # boats are (almost) only ever on water


def test_generator_sample_caption_names_its_content(tiny_world):
    s = generator_sample(tiny_world, 3)
    meta = s["meta.json"]
    for c in meta["classes"]:
        assert c in meta["caption"]
    assert meta["background"] in meta["caption"]
    present = {spec.CLASSES[i - 1] for i in np.unique(s["label.png"]) if i > 0}
    assert present <= set(meta["classes"])


def test_build_world_writes_voc_layout_readable_by_the_reader(tmp_path, tiny_world):
    build_world(tiny_world, tmp_path)
    ds = voc.VOCSegmentation(tmp_path / "voc", "val")
    assert len(ds) == tiny_world.real_val_size
    sid, image, label = ds[0]
    assert image.shape == (32, 32, 3) and label.dtype == np.uint8
    assert label.max() <= len(spec.CLASSES)
    assert (tmp_path / "priors.json").exists() and (tmp_path / "captions.txt").read_text().count("\n") == 200


def test_background_distribution_is_where_the_world_shows_a_class():
    import pytest

    from freemask.world.spec import BACKGROUNDS, background_distribution

    p = dict(zip(BACKGROUNDS, background_distribution("balloon")))
    assert abs(sum(p.values()) - 1) < 1e-12
    assert p["road"] == p["water"] == p["grass"] == 0  # balloons only fly in the sky and float in rooms
    # P(b | balloon) ∝ P(balloon | b) P(b): sky 0.25 * 0.2, floor 0.10 * 0.2
    assert abs(p["sky"] - 0.05 / 0.07) < 1e-12 and abs(p["floor"] - 0.02 / 0.07) < 1e-12
    with pytest.raises(KeyError, match="unknown class 'dog'"):
        background_distribution("dog")


def test_val_scenes_are_the_stored_val_split_before_its_jpeg(tmp_path, tiny_world):
    """evaluate's lossless val is the very split the world stores, and as_stored re-makes the
    stored JPEG pixels exactly (one encoder, one machine)."""
    from freemask.data.arrays import from_voc
    from freemask.world.build import JPEG_QUALITY, val_scenes

    build_world(tiny_world, tmp_path)
    stored_images, stored_labels = from_voc(tmp_path / "voc", "val")
    raw_images, raw_labels = val_scenes(tiny_world)
    assert np.array_equal(raw_labels, stored_labels)
    assert np.array_equal(voc.as_stored(raw_images, JPEG_QUALITY), stored_images)
    assert not np.array_equal(raw_images, stored_images)  # the JPEG loses something at 32 px
    other = val_scenes(tiny_world.model_copy(update={"seed": 1}))[0]
    assert other.shape == raw_images.shape and not np.array_equal(other, raw_images)
