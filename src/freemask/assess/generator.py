"""Judging the generator: are its samples recognisable, and do its attention masks fit?

- a small CNN trained on renders (with lighting augmentation) labels generated samples;
- attention masks of generated samples are scored against an oracle segmenter's prediction;
- attention masks of noised real renders (one denoising pass) are scored against the truth: renders
  on the backgrounds the world shows each class on, and, as a stress test, on any background;
- the mask-quality table (``mask_quality``): every mask rule at every resolution subset, on the
  generate stage's first samples of each class (re-made with its params and seeds, attention
  recorded once) against the oracle, and on the noised renders against the truth.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..masks.affinity_net import load_affinity_net
from ..masks.refine import threshold_grid
from ..masks.result import ObjectMasks
from ..metrics.segmentation import IGNORE_INDEX, mask_iou
from ..metrics.segmentation import per_class_mean as _per_class_mean
from ..params import Generate
from ..world.build import prompt, to_uint8
from ..world.render import render_scene, single_object_layout
from ..world.spec import BACKGROUNDS, CLASSES, background_distribution, class_index
from ..attention.recorder import AttentionStore, recording
from ..attention.tokens import word_tokens
from ..data.arrays import read_members
from ..diffusion.models import Generator, load_generator
from ..generate.dataset import object_tokens, sample_objects
from ..generate.plan import plan_objects
from ..labels import toy_labels
from ..masks.rules import RecordedAttention, check_fits, check_resolutions, masks_from_recorded, new_store
from .mask_quality import RuleScores, mask_quality_table, mask_settings


class RenderClassifier(nn.Module):
    def __init__(self, n_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_classifier(images: np.ndarray, labels: np.ndarray, steps: int, seed: int, batch_size: int = 128) -> RenderClassifier:
    """Class of the object in each image; brightness/tint jitter and noise make it robust to lighting."""
    torch.manual_seed(seed)
    net = RenderClassifier(int(labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x_all, y_all = _to_tensor(images), torch.from_numpy(labels).long()
    for step in tqdm(range(steps), desc="assess: classifier"):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x = (x_all[idx] + 1) / 2
        x = x * (0.7 + 0.6 * torch.rand(batch_size, 1, 1, 1, generator=g)) \
            * (0.85 + 0.3 * torch.rand(batch_size, 3, 1, 1, generator=g))
        x = x.clamp(0, 1) * 2 - 1 + 0.05 * torch.randn(x.shape, generator=g)
        loss = F.cross_entropy(net(x), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def classify(net: RenderClassifier, images: np.ndarray) -> np.ndarray:
    return net(_to_tensor(images)).argmax(1).numpy()


def per_class_mean(values: np.ndarray, classes: list[str]) -> dict:
    return _per_class_mean(values, classes, CLASSES)


# Where the renders' objects are shown: "world" draws each render's background from P(background |
# object), as the world and the generate stage's prompts do (the masks that matter are made for these);
# "any" draws it uniformly, so most renders are combinations the world never shows (an aeroplane
# on a floor): a stress test of the attention outside the prompts the pipeline uses.
RENDER_BACKGROUNDS = ("world", "any")


def noised_renders(n_per_class: int, seed: int, resolution: int, backgrounds: str = "world"
                   ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Single-object renders (uint8 images), their true object masks, classes and prompts; each
    render's background drawn by ``backgrounds`` (``RENDER_BACKGROUNDS``)."""
    if backgrounds not in RENDER_BACKGROUNDS:
        raise ValueError(f"render backgrounds must be one of {RENDER_BACKGROUNDS}, got {backgrounds!r}")
    uniform = np.full(len(BACKGROUNDS), 1 / len(BACKGROUNDS))
    images, truths, classes, prompts = [], [], [], []
    for k, cls in enumerate(CLASSES):
        p = background_distribution(cls) if backgrounds == "world" else uniform
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, 11, k, i])
            bg = BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=p))]
            img, label = render_scene(rng, bg, [single_object_layout(rng, cls)], resolution)
            images.append(to_uint8(img))
            truths.append(label == class_index(cls))
            classes.append(cls)
            prompts.append(prompt([cls], bg))
    return np.stack(images), np.stack(truths), classes, prompts


@torch.no_grad()
def record_noised_renders(gen: Generator, images: np.ndarray, prompts: list[str], classes: list[str],
                          timesteps: list[int], seed: int, self_attention_resolution: int,
                          batch_size: int, self_attention_steps: int | None = None
                          ) -> Iterator[tuple[slice, RecordedAttention]]:
    """Attention of renders noised at ``timesteps`` (one UNet pass each, maps averaged), batch by
    batch, with self-attention recorded so that every mask rule can be applied: at the
    ``self_attention_steps`` least noisy timesteps (all if None), as the sampler records it at its
    last steps. The noise is drawn for all renders at once, so it does not depend on the batch size."""
    quiet = set(sorted(timesteps)[:self_attention_steps] if self_attention_steps is not None else timesteps)
    x0 = _to_tensor(images)
    g = torch.Generator().manual_seed(seed)
    noise = [torch.randn(x0.shape, generator=g) for _ in timesteps]
    for b in range(0, len(x0), batch_size):
        sl = slice(b, b + batch_size)
        tokens = word_tokens(gen.tokenizer, prompts[sl], [[c] for c in classes[sl]])
        store = AttentionStore(tokens.index, self_attention_resolution=self_attention_resolution)
        context = gen.encode(prompts[sl])
        with recording(gen.unet, store):
            for t, n in zip(timesteps, noise):
                store.self_active = t in quiet
                tt = torch.full((len(x0[sl]),), t, dtype=torch.long)
                gen.unet(gen.scheduler.add_noise(x0[sl], n[sl], tt), tt, encoder_hidden_states=context)
        yield sl, RecordedAttention(store, images.shape[1], tokens)


@torch.no_grad()
def record_generated(gen: Generator, gcfg: Generate, n_per_class: int) -> Iterator[tuple[list, np.ndarray, RecordedAttention]]:
    """The generate stage's first ``n_per_class`` samples of every class (same prompts and seeds: its
    plan does not depend on generate.per_class), re-made batch by batch with self-attention recorded."""
    labels = toy_labels()
    plan = plan_objects(gcfg.model_copy(update={"per_class": n_per_class}), labels)
    for b in tqdm(range(0, len(plan), gcfg.batch_size), desc="assess: mask-quality samples"):
        batch = plan[b:b + gcfg.batch_size]
        tokens = object_tokens(gen, batch, labels)
        store = new_store(tokens, gcfg, every_rule=True)
        images = sample_objects(gen, batch, gcfg, store)
        yield batch, images, RecordedAttention(store, images.shape[1], tokens)


def score_noised_renders(gen: Generator, cfg, gcfg: Generate, size: int, backgrounds: str,
                         on_renders: RuleScores | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The generate rule's mask IoU against the truth on ``assess.renders_per_class`` noised renders
    per class (backgrounds drawn by ``backgrounds``), with the normalised maps the rule thresholded,
    the truths and the classes; every rule of ``on_renders`` scored on the same recording if given."""
    images, truths, classes, prompts = noised_renders(cfg.renders_per_class, cfg.seed, size, backgrounds)
    ious, maps = [], []
    for sl, rec in record_noised_renders(gen, images, prompts, classes, cfg.noise_timesteps, cfg.seed,
                                         gcfg.refine.resolution, gcfg.batch_size, gcfg.refine.self_attention_steps):
        ious.append(mask_ious(masks_from_recorded(rec, gcfg, classes[sl]), truths[sl]))
        maps.append(rec.maps(gcfg.resolutions, "generate.resolutions"))
        if on_renders is not None:
            on_renders.add(rec, classes[sl], truths[sl], images[sl])
    return np.concatenate(ious), np.concatenate(maps), truths, classes


def mask_ious(masks: ObjectMasks, truth: np.ndarray) -> np.ndarray:
    """Per-sample IoU over the pixels the masks do not ignore."""
    return np.array([mask_iou(f, t, i) for f, t, i in zip(masks.foreground, truth, masks.ignore)])


def load_render_classes(generator_train_dir) -> tuple[np.ndarray, np.ndarray]:
    """Single-object renders of the generator's training set with their class ids (0-based)."""
    m = read_members([generator_train_dir], ("image.png", "meta.json"))
    single = [i for i, meta in enumerate(m["meta.json"]) if len(meta["classes"]) == 1]
    return (np.stack([m["image.png"][i] for i in single]),
            np.array([CLASSES.index(m["meta.json"][i]["classes"][0]) for i in single]))


def stored_object_masks(labels: np.ndarray) -> ObjectMasks:
    """The masks the generate stage wrote (label maps: class id, 0, 255 = ignored)."""
    ignore = labels == IGNORE_INDEX
    return ObjectMasks(np.zeros(labels.shape, np.float32), (labels > 0) & ~ignore, ignore)


def best_fixed_threshold(maps: np.ndarray, references: np.ndarray, classes: list[str], grid: np.ndarray) -> dict:
    """The single threshold of ``grid`` whose masks ``maps > t`` have the highest class-mean IoU with
    ``references``, chosen with hindsight on the very samples it is scored on: the strongest a fixed
    threshold can be, the baseline the per-image refinement has to beat. Also the whole curve."""
    if len(grid) == 0:
        raise ValueError("empty threshold grid")
    curve = [per_class_mean(mask_ious(ObjectMasks.binary(maps, maps > t), references), classes) for t in grid]
    best = int(np.argmax([c["mean"] for c in curve]))
    return {"threshold": round(float(grid[best]), 4), **curve[best],
            "curve": {f"{t:.2f}": c["mean"] for t, c in zip(grid, curve)}}


def assess_generator(params, generator_dir, generator_train_dir, objects_dir, oracle_dir,
                     affinity_net_dir=None) -> dict:
    """All generator-quality figures of the spine: recognisability, attention-mask IoU under the
    generate params, and the mask-quality table of every rule and resolution subset (with the
    learned affinity net of ``affinity_net_dir`` beside the self-attention, if given)."""
    from ..segmenters.mask2former import load_segmenter, predict

    cfg, gcfg = params.assess, params.generate
    gen = load_generator(generator_dir)
    check_fits(gcfg, gen.unet, every_rule=True)  # the mask-quality table applies every rule
    check_resolutions(sorted({r for rs in cfg.mask_quality_resolutions for r in rs}), gen.unet,
                      "assess.mask_quality_resolutions")
    render_x, render_y = load_render_classes(generator_train_dir)
    clf = train_classifier(render_x, render_y, cfg.classifier_steps, cfg.seed)

    m = read_members([objects_dir], ("image.png", "label.png", "attention.png", "meta.json"))
    images, stored = np.stack(m["image.png"]), stored_object_masks(np.stack(m["label.png"]))
    classes = [meta["class"] for meta in m["meta.json"]]
    maps = np.stack(m["attention.png"]).astype(np.float32) / 255.0  # the normalised maps the rule thresholded
    predicted = classify(clf, images)
    correct = (predicted == np.array([CLASSES.index(c) for c in classes])).astype(float)
    oracle = load_segmenter(oracle_dir)
    oracle_masks = np.stack([o == class_index(c) for o, c in zip(predict(oracle, images), classes)])

    net = load_affinity_net(affinity_net_dir) if affinity_net_dir is not None else None
    settings = mask_settings(cfg.mask_quality_resolutions, learned=net is not None)
    on_renders, on_generated = RuleScores(settings, gcfg, net), RuleScores(settings, gcfg, net)
    size = images.shape[1]
    render_ious, render_maps, r_truths, r_classes = score_noised_renders(gen, cfg, gcfg, size, "world", on_renders)
    any_ious, _, _, any_classes = score_noised_renders(gen, cfg, gcfg, size, "any")
    for batch, gen_images, rec in record_generated(gen, gcfg, cfg.mask_quality_per_class):
        reference = np.stack([o == class_index(p.cls) for o, p in zip(predict(oracle, gen_images), batch)])
        on_generated.add(rec, [p.cls for p in batch], reference, gen_images)

    held_out = classify(clf, render_x[-2000:]) == render_y[-2000:]
    grid = threshold_grid(gcfg.refine.grid_step)
    return {
        "classifier_accuracy_on_generated": per_class_mean(correct, classes),
        "classifier_accuracy_on_renders_seen_in_training": round(float(held_out.mean()), 4),
        "attention_iou_vs_oracle_on_generated": per_class_mean(mask_ious(stored, oracle_masks), classes),
        "attention_ignored_share_on_generated": per_class_mean(stored.ignore.mean(axis=(1, 2)), classes),
        "attention_iou_vs_truth_on_noised_renders": per_class_mean(render_ious, r_classes),
        "attention_iou_vs_truth_on_noised_renders_any_background": per_class_mean(any_ious, any_classes),
        "best_fixed_threshold_vs_oracle_on_generated": best_fixed_threshold(maps, oracle_masks, classes, grid),
        "best_fixed_threshold_vs_truth_on_noised_renders": best_fixed_threshold(
            render_maps, r_truths, r_classes, grid),
        "mask_quality": mask_quality_table(on_generated, on_renders),
        "n_generated": int(len(images)),
        "n_noised_renders": int(len(r_truths)),
    }
