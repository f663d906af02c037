"""Sample grids: generated images with their masks overlaid in the VOC palette."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..data.voc import voc_palette


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    pal = np.array(voc_palette(), np.float32).reshape(-1, 3)
    colour = pal[label]
    fg = (label > 0) & (label != 255)
    out = image.astype(np.float32)
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return out.astype(np.uint8)


def sample_grid(rows: list[list[np.ndarray]], scale: int = 4, pad: int = 2) -> Image.Image:
    """Tile equally sized RGB uint8 images (rows of columns), each enlarged ``scale`` times."""
    h, w = rows[0][0].shape[:2]
    H, W = h * scale, w * scale
    ncol = max(len(r) for r in rows)
    canvas = Image.new("RGB", (ncol * (W + pad) + pad, len(rows) * (H + pad) + pad), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = Image.fromarray(img).resize((W, H), Image.NEAREST)
            canvas.paste(tile, (pad + j * (W + pad), pad + i * (H + pad)))
    return canvas


def object_and_composite_grid(objects_dir, composed_dir, n_objects: int, n_composites: int = 8) -> Image.Image:
    """Generated objects (image, mask overlay) round-robin over classes, then a row of composites."""
    from ..data import shards

    by_class: dict[str, list[np.ndarray]] = {}
    for _, m in shards.read_shards(objects_dir):
        by_class.setdefault(m["meta.json"]["class"], []).append(m)
    tiles = []
    for i in range(n_objects):
        cls = sorted(by_class)[i % len(by_class)]
        items = by_class[cls]
        m = items[(i // len(by_class)) % len(items)]
        tiles += [m["image.png"], overlay(m["image.png"], m["label.png"])]
    comp = []
    for _, (_, m) in zip(range(n_composites), shards.read_shards(composed_dir)):
        comp += [m["image.png"], overlay(m["image.png"], m["label.png"])]
    return sample_grid([tiles[i:i + 16] for i in range(0, len(tiles), 16)] + [comp])
