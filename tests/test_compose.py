import numpy as np

from freemask.compose.paste import cut_out, paste


def _object(label_value=3):
    img = np.zeros((10, 10, 3), np.uint8)
    lab = np.zeros((10, 10), np.uint8)
    img[2:6, 3:7] = 200
    lab[2:6, 3:7] = label_value
    return cut_out("k", img, lab)


def test_cut_out_crops_to_the_mask_and_skips_empty_masks():
    c = _object()
    assert c.rgb.shape == (4, 4, 3) and c.mask.all() and c.label == 3
    assert cut_out("e", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)) is None


def test_newer_paste_overwrites_the_labels_it_covers():
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, _object(3), 0.4, 0.5, 0.4)
    paste(image, label, _object(5), 0.6, 0.5, 0.4)
    assert (label == 5).sum() == 64 and (label == 3).sum() == 64 - 4 * 8  # 8x8 boxes overlapping by 4 columns
    assert (image[label > 0] == 200).all() and (image[label == 0] == 0).all()


def test_paste_clips_at_the_border():
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, _object(2), 0.0, 0.0, 0.4)
    assert (label == 2).sum() == 16 and label[:4, :4].all()
    for cx, cy in ((1.3, 0.5), (0.5, -0.3)):  # wholly outside: nothing changes, nothing breaks
        before = image.copy(), label.copy()
        pasted, labelled, area = paste(image, label, _object(7), cx, cy, 0.4)
        assert not pasted.any() and not labelled.any() and area == 64
        assert np.array_equal(image, before[0]) and np.array_equal(label, before[1])


def test_undecided_pixels_are_pasted_as_ignore_never_as_object():
    img = np.zeros((10, 10, 3), np.uint8)
    lab = np.zeros((10, 10), np.uint8)
    img[2:6, 3:7] = 200
    lab[2:6, 3:7] = 4
    img[6, 3:7] = 100  # an undecided rim below the object
    lab[6, 3:7] = 255
    c = cut_out("k", img, lab)
    assert c.rgb.shape == (5, 4, 3) and c.mask.sum() == 16 and c.ignore.sum() == 4 and c.label == 4
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    paste(image, label, c, 0.5, 0.5, 0.5)  # 5x4 -> 10x8
    assert (label == 4).sum() == 64 and (label == 255).sum() == 16
    assert (image[label != 0] > 0).all() and (image[label == 0] == 0).all()  # the rim's pixels come along
    assert (label[5:13, 6:14] == 4).all() and (label[13:15, 6:14] == 255).all()
    # a later object 3 rows higher: its undecided rim (rows 7-8) covers rows of the first object
    paste(image, label, c, 0.5, 0.2, 0.5)
    assert (label[0:7, 6:14] == 4).all() and (label[7:9, 6:14] == 255).all() and (label[9:13, 6:14] == 4).all()


def test_a_sample_with_only_undecided_pixels_gives_no_cutout():
    lab = np.zeros((4, 4), np.uint8)
    lab[1:3, 1:3] = 255
    assert cut_out("u", np.zeros((4, 4, 3), np.uint8), lab) is None


def _write_sources(tmp_path):
    """Object shards (a class-1 object generated on sky, a class-4 one on grass) and scene shards
    (sky, grass and water), in the layout the generate stage writes."""
    from freemask.data import shards

    def obj(value, bg):
        img, lab = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
        img[2:6, 2:6], lab[2:6, 2:6] = 50 * value, value
        return {"image.png": img, "label.png": lab, "meta.json": {"background": bg, "class": f"c{value}"}}

    def scene(bg, shade):
        return {"image.png": np.full((8, 8, 3), shade, np.uint8), "meta.json": {"background": bg}}

    shards.write_shard(tmp_path / "objects" / shards.shard_name(0), [("a", obj(1, "sky")), ("b", obj(4, "grass"))])
    shards.write_shard(tmp_path / "scenes" / shards.shard_name(0),
                       [("sky_0", scene("sky", 10)), ("grass_0", scene("grass", 20)), ("water_0", scene("water", 30))])


def _composed(tmp_path, mode, name, seed=0, allowed=None, harmonize="none"):
    from freemask.compose.scenes import Tools, compose_dataset
    from freemask.data import shards
    from freemask.params import Compose

    cfg = Compose(mode=mode, n_images=40, max_objects=3, shard_size=16, seed=seed, harmonize=harmonize)
    stats = compose_dataset(cfg, tmp_path / "objects", tmp_path / "scenes", tmp_path / name,
                            Tools(("c1", "c2", "c3", "c4")), allowed)
    return stats, dict(shards.read_shards(tmp_path / name))


def test_same_background_pastes_objects_only_into_scenes_of_their_background(tmp_path):
    _write_sources(tmp_path)
    stats, out = _composed(tmp_path, "same_background", "same")
    assert stats["scenes"] == 2 and stats["scenes_left_out"] == 1  # no object was generated on water
    seen = set()
    for rec in out.values():
        scene, labels = rec["meta.json"]["scene"], set(np.unique(rec["label.png"])) - {0}
        assert labels == ({1} if scene == "sky_0" else {4}), (scene, labels)
        assert set(rec["meta.json"]["objects"]) == ({"a"} if scene == "sky_0" else {"b"})
        seen.add(scene)
    assert seen == {"sky_0", "grass_0"}
    stats, out = _composed(tmp_path, "random", "random")
    assert stats["scenes_left_out"] == 0
    assert any(r["meta.json"]["scene"] == "water_0" for r in out.values())
    assert any({1, 4} <= set(np.unique(r["label.png"])) for r in out.values())  # any object into any scene


def test_statistics_harmonization_fits_its_light_on_the_object_pool(tmp_path):
    import pytest

    from freemask.data import shards
    from freemask.errors import DataError

    _write_sources(tmp_path)
    with pytest.raises(DataError, match=r"objects: harmonize=statistics: the backgrounds grass \| sky share no generated"):
        _composed(tmp_path, "same_background", "x", harmonize="statistics")
    # a class-1 object on grass too, a little darker there: the two backgrounds' lights can be compared
    img, lab = np.full((8, 8, 3), 20, np.uint8), np.zeros((8, 8), np.uint8)
    img[2:6, 2:6], lab[2:6, 2:6] = 40, 1
    shards.write_shard(tmp_path / "objects" / shards.shard_name(1),
                       [("c", {"image.png": img, "label.png": lab, "meta.json": {"background": "grass"}})])
    with pytest.raises(DataError, match="the light reference knows no water"):
        _composed(tmp_path, "random", "y", harmonize="statistics")
    stats, lit = _composed(tmp_path, "same_background", "lit", harmonize="statistics")
    assert set(stats["light_gain"]) == {"grass", "sky"}
    _, plain = _composed(tmp_path, "same_background", "plain")
    assert all(np.array_equal(lit[k]["label.png"], plain[k]["label.png"]) for k in plain)
    assert any(not np.array_equal(lit[k]["image.png"], plain[k]["image.png"]) for k in plain)


def test_composition_is_deterministic_per_seed(tmp_path):
    _write_sources(tmp_path)
    _, a = _composed(tmp_path, "same_background", "a")
    _, b = _composed(tmp_path, "same_background", "b")
    _, c = _composed(tmp_path, "same_background", "c", seed=1)
    assert a.keys() == b.keys() and all((a[k]["image.png"] == b[k]["image.png"]).all() for k in a)
    assert any((a[k]["label.png"] != c[k]["label.png"]).any() for k in a)


def test_same_background_without_a_matching_scene_names_the_backgrounds(tmp_path):
    import pytest

    from freemask.compose.paste import Cutout
    from freemask.compose.scenes import Scene, scene_pools

    c = Cutout("a", np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), bool), 1, np.zeros((1, 1), bool), "sky")
    with pytest.raises(ValueError, match=r"same_background.*scenes: \['road'\], objects: \['sky'\]"):
        scene_pools("same_background", [c], [Scene("r", "road", np.zeros((2, 2, 3), np.uint8))])


def test_thesaurus_mode_lets_a_class_join_the_scenes_whose_r_is_above_the_threshold(tmp_path):
    """Class 1 was generated on sky, class 4 on grass; the thesaurus lets class 1 into water and sky
    scenes and class 4 into sky scenes only, so the grass scene is left out."""
    import polars as pl

    from freemask.thesaurus import allowed_labels

    r = {("c1", "sky"): 0.5, ("c4", "sky"): 0.5, ("c4", "grass"): 0.02, ("c1", "water"): 0.5}
    pairs = [(o, b) for b in ("sky", "grass", "water") for o in ("c1", "c2", "c3", "c4")]
    thesaurus = pl.DataFrame({"object": [o for o, _ in pairs], "background": [b for _, b in pairs],
                              "R": [r.get(pair, 0.0) for pair in pairs]})
    allowed = allowed_labels(thesaurus, ["c1", "c2", "c3", "c4"], threshold=0.05)
    assert allowed == {"sky": {1, 4}, "grass": set(), "water": {1}}
    _write_sources(tmp_path)
    stats, out = _composed(tmp_path, "thesaurus", "th", allowed=allowed)
    assert stats["scenes"] == 2 and stats["scenes_left_out"] == 1
    by_scene: dict[str, set] = {}
    for rec in out.values():
        by_scene.setdefault(rec["meta.json"]["scene"], set()).update(set(np.unique(rec["label.png"])) - {0})
    assert by_scene == {"sky_0": {1, 4}, "water_0": {1}}
