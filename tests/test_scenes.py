"""Multi-object scenes: stacking, visibility, k, the overlap bound, placement and harmonization modes."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freemask.compose.harmonize import LightReference
from freemask.compose.paste import Cutout, paste
from freemask.compose.placement import box_of, iou, load_placement
from freemask.compose.scenes import Layer, Tools, compose_one, load_tools, stack
from freemask.metrics.segmentation import IGNORE_INDEX
from freemask.params import Compose, Harmonize
from freemask.world.placement import plausible_box
from freemask.world.spec import CLASSES

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Tools(("c1", "c2", "c3", "c4", "c5"))


def _cutout(key, label, h, w, undecided_rows=0, shade=100):
    rgb = np.full((h + undecided_rows, w, 3), shade, np.uint8)
    mask = np.zeros((h + undecided_rows, w), bool)
    mask[:h] = True
    return Cutout(key, rgb, mask, label, ~mask, "sky")


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 5))
    layers = []
    for i in range(n):
        c = _cutout(f"o{i}", draw(st.integers(1, 5)), draw(st.integers(2, 12)), draw(st.integers(2, 12)),
                    draw(st.integers(0, 2)), shade=40 * (i + 1))
        layers.append(Layer(c, draw(st.floats(0, 1)), draw(st.floats(0, 1)), draw(st.floats(0.1, 0.8))))
    return layers


def _alone(layer, size=24):
    """The pixels one layer pastes, and those it labels as its object, on an empty canvas."""
    covered, labelled, _ = paste(np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8),
                                 layer.cutout, layer.cx, layer.cy, layer.side)
    return covered, labelled


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_the_composite_mask_is_the_stacking_result(layers):
    """Each pixel takes the label of the newest object that covers it (255 where that object's pixel
    is undecided, 0 where none does); so no class is labelled where none of its objects is visible."""
    scene = np.zeros((24, 24, 3), np.uint8)
    _, label, visible = stack(scene, layers, Compose(), TOOLS)
    expected = np.zeros((24, 24), np.uint8)
    top = np.full((24, 24), -1)
    for i, layer in enumerate(layers):
        covered, labelled = _alone(layer)
        top[covered] = i
        expected[covered] = IGNORE_INDEX
        expected[labelled] = layer.cutout.label
    assert np.array_equal(label, expected)
    for i, layer in enumerate(layers):
        _, labelled = _alone(layer)
        seen = labelled & (top == i)
        assert (label[seen] == layer.cutout.label).all()
        assert (visible[i] > 0) == seen.any()
    for cls in set(np.unique(label)) - {0, IGNORE_INDEX}:
        owners = [i for i, lay in enumerate(layers) if lay.cutout.label == cls]
        assert (np.isin(top[label == cls], owners)).all()


@settings(max_examples=60, deadline=None)
@given(layouts(), st.floats(0.05, 0.95))
def test_an_object_hidden_below_min_visible_is_dropped_or_ignored(layers, min_visible):
    scene = np.zeros((24, 24, 3), np.uint8)
    _, _, visible = stack(scene, layers, Compose(), TOOLS)
    hidden = [i for i, v in enumerate(visible) if v < min_visible]
    # ignore: exactly the pixels the hidden objects still show become 255
    _, plain, _ = stack(scene, layers, Compose(), TOOLS)
    _, marked, _ = stack(scene, layers, Compose(min_visible=min_visible, occluded="ignore"), TOOLS)
    shown = np.zeros(plain.shape, bool)
    top = np.full(plain.shape, -1)
    for i, layer in enumerate(layers):
        covered, _ = _alone(layer)
        top[covered] = i
    for i in hidden:
        shown |= (top == i) & _alone(layers[i])[1]
    assert np.array_equal(marked, np.where(shown, IGNORE_INDEX, plain))
    # drop: composing again without the hidden objects leaves every kept one visible enough
    kept = [lay for i, lay in enumerate(layers) if i not in hidden]
    _, _, again = stack(scene, kept, Compose(), TOOLS)
    assert all(v >= min_visible for v in again)


def test_compose_one_drops_an_object_a_newer_one_hides():
    """Two objects at the same place, the second larger: the first is invisible and dropped."""
    small, big = _cutout("small", 1, 4, 4), _cutout("big", 2, 8, 8)
    scene = np.zeros((32, 32, 3), np.uint8)
    cfg = Compose(max_objects=2, k_weights=[0, 1], min_size=0.3, max_size=0.3, min_visible=0.2)
    seen = {"dropped": 0}
    for seed in range(20):
        image, label, meta = compose_one(np.random.default_rng(seed), scene, [small, big], cfg, TOOLS)
        assert len(meta["objects"]) + len(meta["dropped"]) == 2
        assert all(v >= 0.2 for v in meta["visible"])
        for key in meta["dropped"]:
            assert (label != {"small": 1, "big": 2}[key]).all() or key in meta["objects"]
        seen["dropped"] += len(meta["dropped"])
    assert seen["dropped"] > 0  # same-size boxes of two objects often hide one


def test_k_follows_k_weights_and_boxes_respect_the_overlap_bound():
    pool = [_cutout("a", 1, 6, 6)]
    scene = np.zeros((32, 32, 3), np.uint8)
    cfg = Compose(max_objects=3, k_weights=[0, 0, 1], max_overlap=0.1)
    counts = []
    for seed in range(30):
        _, _, meta = compose_one(np.random.default_rng(seed), scene, pool, cfg, TOOLS)
        counts.append(len(meta["objects"]))
        boxes = [box_of(pool[0], *b) for b in meta["boxes"]]
        for i in range(len(boxes)):
            for j in range(i):
                assert iou(np.asarray(boxes[i]), boxes[j]) <= 0.1 + 1e-3  # boxes stored to 4 decimals
    assert counts == [3] * 30
    cfg = Compose(max_objects=3, k_weights=[1, 0, 0])
    assert all(len(compose_one(np.random.default_rng(s), scene, pool, cfg, TOOLS)[2]["objects"]) == 1 for s in range(10))


def test_k_weights_must_fit_max_objects():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="compose.k_weights must be 3"):
        Compose(max_objects=3, k_weights=[1, 1])


def test_harmonization_changes_only_the_pasted_pixels_and_never_the_labels():
    pool = [_cutout("a", 1, 8, 8, shade=250)]
    scene = np.zeros((32, 32, 3), np.uint8)
    scene[:, :, 1] = 120
    pool = [replace(pool[0], surround=np.log([0.3, 0.5, 0.9]))]  # cut out of a sky image a little darker than its kind
    light = LightReference({"sky": np.log([0.4, 0.6, 0.9]), "grass": np.log([0.2, 0.5, 0.2])},
                           {"sky": np.log([1.1, 1.1, 1.2]), "grass": np.zeros(3)})
    tools = replace(TOOLS, light=light)
    plain = compose_one(np.random.default_rng(3), scene, pool, Compose(), tools, "grass")
    matched = compose_one(np.random.default_rng(3), scene, pool, Compose(harmonize="statistics"), tools, "grass")
    assert np.array_equal(plain[1], matched[1]) and plain[2] == matched[2]
    off = plain[1] == 0
    assert np.array_equal(plain[0][off], matched[0][off]) and not np.array_equal(plain[0], matched[0])


@pytest.mark.skipif(not (ROOT / "models/placement/weights.safetensors").is_file(), reason="no trained placement model")
@pytest.mark.parametrize("mode", ["learned", "prior"])
def test_learned_and_prior_placements_in_toy_scenes_are_plausible(mode):
    """With the committed model, compose's placements of toy val cut-outs pass the world's own prior;
    random ones mostly do not."""
    from freemask.compose.train_placement import KIND_VAL, make_example
    from freemask.params import PlacementParams

    model = load_placement(ROOT / "models/placement")
    tools = Tools(tuple(CLASSES), placement_model=model)
    judged = {}
    for m in (mode, "random"):
        ok = []
        for i in range(40):
            ex = make_example(11, KIND_VAL, i, PlacementParams())
            label = CLASSES.index(ex.cls) + 1
            cut = Cutout(ex.cutout.key, ex.cutout.rgb, ex.cutout.mask, label, ex.cutout.ignore)
            _, _, meta = compose_one(np.random.default_rng(i), ex.scene, [cut], Compose(placement=m, max_objects=1), tools)
            ok += [plausible_box(ex.cls, *b) for b in meta["boxes"]]
        judged[m] = sum(ok) / len(ok)
    assert judged[mode] >= 0.9 and judged["random"] < 0.5, judged


@pytest.mark.skipif(not (ROOT / "models/placement/weights.safetensors").is_file(), reason="no trained placement model")
def test_the_committed_model_puts_one_red_disc_on_the_ground_as_a_ball_and_in_the_sky_as_a_balloon():
    """The look-alikes: the placement network is told the class, so the same cut-out goes where
    the class it is pasted as belongs."""
    from freemask.compose.placement import propose
    from freemask.compose.train_placement import KIND_VAL, make_example
    from freemask.params import PlacementParams

    model, cfg = load_placement(ROOT / "models/placement"), PlacementParams()
    ok = {"ball": [], "balloon": []}
    for i in range(20):
        ball = make_example(12, KIND_VAL, CLASSES.index("ball") + len(CLASSES) * i, cfg)
        for told in ok:
            p = propose("learned", told, ball.scene, ball.cutout, np.random.default_rng(i), model=model, cfg=cfg)
            ok[told].append(p is not None and plausible_box(told, *p))
    assert min(np.mean(v) for v in ok.values()) >= 0.9, {k: np.mean(v) for k, v in ok.items()}


def test_load_tools_reads_only_the_models_the_modes_use(tmp_path):
    tools = load_tools(Compose(), ["a"], Tools(("a",)).placement, tmp_path / "none", tmp_path / "none")
    assert tools.placement_model is None and tools.harmonizer is None
    lit = load_tools(Compose(harmonize="statistics"), ["a"], tools.placement, tmp_path / "none", tmp_path / "none",
                     Harmonize(reference_renders=100))
    assert lit.harmonizer is None and set(lit.light.light) == {"sky", "grass", "road", "water", "floor"}
    assert load_tools(Compose(harmonize="statistics"), ["a"], tools.placement, tmp_path / "none", tmp_path / "none",
                      Harmonize(reference="generated")).light is None  # compose fits it on the object pool
    with pytest.raises(FileNotFoundError, match="train_placement"):
        load_tools(Compose(placement="learned"), ["a"], tools.placement, tmp_path / "none", tmp_path / "none")
