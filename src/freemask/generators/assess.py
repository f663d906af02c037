"""Judging the generator: are its samples recognisable, and do its attention masks fit?

- a small CNN trained on renders (with lighting augmentation) labels generated samples;
- attention masks of generated samples are scored against an oracle segmenter's prediction;
- attention masks of noised real renders (one denoising pass) are scored against the truth.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..metrics.segmentation import mask_iou
from ..params import Generate
from ..world.build import prompt, to_uint8
from ..world.render import render_scene, single_object_layout
from ..world.spec import BACKGROUNDS, CLASSES, class_index
from .attention import recording, token_positions
from .masking import masks_from_store, new_store
from .toy import ToyGenerator


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
        x = x * (0.7 + 0.6 * torch.rand(batch_size, 1, 1, 1, generator=g)) * (0.85 + 0.3 * torch.rand(batch_size, 3, 1, 1, generator=g))
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
    classes_arr = np.array(classes)
    per = {c: round(float(values[classes_arr == c].mean()), 4) for c in CLASSES if (classes_arr == c).any()}
    return {"mean": round(float(np.mean(list(per.values()))), 4), "per_class": per}


@torch.no_grad()
def noised_render_masks(gen: ToyGenerator, n_per_class: int, seed: int, timesteps: list[int], gcfg: Generate,
                        resolution: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Attention masks of real renders noised at ``timesteps`` (maps averaged), with their true masks."""
    images, truths, classes, prompts = [], [], [], []
    for k, cls in enumerate(CLASSES):
        for i in range(n_per_class):
            rng = np.random.default_rng([seed, 11, k, i])
            bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
            img, label = render_scene(rng, bg, [single_object_layout(rng, cls)], resolution)
            images.append(to_uint8(img))
            truths.append(label == class_index(cls))
            classes.append(cls)
            prompts.append(prompt([cls], bg))
    x0 = _to_tensor(np.stack(images))
    idx = torch.tensor([token_positions(gen.tokenizer, p, c)[0] for p, c in zip(prompts, classes)])[:, None]
    store = new_store(idx, gcfg)
    context = gen.encode(prompts)
    g = torch.Generator().manual_seed(seed)
    with recording(gen.unet, store):
        for t in timesteps:
            tt = torch.full((len(x0),), t, dtype=torch.long)
            gen.unet(gen.scheduler.add_noise(x0, torch.randn(x0.shape, generator=g), tt), tt, encoder_hidden_states=context)
    masks = masks_from_store(store, resolution, gcfg, classes)
    return masks.foreground, np.stack(truths), classes


def mask_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([mask_iou(a, b) for a, b in zip(pred, truth)])


def load_render_classes(generator_train_dir) -> tuple[np.ndarray, np.ndarray]:
    """Single-object renders of the generator's training set with their class ids (0-based)."""
    from ..data import shards

    images, labels = [], []
    for _, m in shards.read_shards(generator_train_dir):
        classes = m["meta.json"]["classes"]
        if len(classes) == 1:
            images.append(m["image.png"])
            labels.append(CLASSES.index(classes[0]))
    return np.stack(images), np.array(labels)


def assess_generator(params, generator_dir, generator_train_dir, objects_dir, oracle_dir) -> dict:
    """All generator-quality figures of the spine: recognisability and attention-mask IoU."""
    from ..data import shards
    from ..segmenters.mask2former import load_segmenter, predict

    cfg, gcfg = params.assess, params.generate
    gen = ToyGenerator.load(generator_dir)
    render_x, render_y = load_render_classes(generator_train_dir)
    clf = train_classifier(render_x, render_y, cfg.classifier_steps, cfg.seed)

    images, att_masks, classes = [], [], []
    for _, m in shards.read_shards(objects_dir):
        images.append(m["image.png"])
        att_masks.append(m["label.png"] > 0)
        classes.append(m["meta.json"]["class"])
    images, att_masks = np.stack(images), np.stack(att_masks)
    predicted = classify(clf, images)
    correct = (predicted == np.array([CLASSES.index(c) for c in classes])).astype(float)
    oracle = predict(load_segmenter(oracle_dir), images)
    oracle_masks = np.stack([o == class_index(c) for o, c in zip(oracle, classes)])

    nm, nt, ncls = noised_render_masks(gen, cfg.renders_per_class, cfg.seed, cfg.noise_timesteps, gcfg, images.shape[1])
    held_out = classify(clf, render_x[-2000:]) == render_y[-2000:]
    return {
        "classifier_accuracy_on_generated": per_class_mean(correct, classes),
        "classifier_accuracy_on_renders_seen_in_training": round(float(held_out.mean()), 4),
        "attention_iou_vs_oracle_on_generated": per_class_mean(mask_ious(att_masks, oracle_masks), classes),
        "attention_iou_vs_truth_on_noised_renders": per_class_mean(mask_ious(nm, nt), ncls),
        "n_generated": int(len(images)),
        "n_noised_renders": int(len(nm)),
    }
