"""What every threshold rule hands back: the map it thresholded, the object pixels and the ignored ones."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics.segmentation import IGNORE_INDEX


@dataclass(frozen=True)
class ObjectMasks:
    """Masks of B single-object images.

    ``maps``: (B, H, W) float32 in [0, 1], the map the rule thresholded; ``foreground``: (B, H, W)
    bool, the object; ``ignore``: (B, H, W) bool, pixels the rule leaves undecided (only rules with
    an uncertainty band set any), never foreground."""

    maps: np.ndarray
    foreground: np.ndarray
    ignore: np.ndarray

    def __post_init__(self):
        if not (self.maps.shape == self.foreground.shape == self.ignore.shape) or self.maps.ndim != 3:
            raise ValueError(f"maps {self.maps.shape}, foreground {self.foreground.shape} and ignore "
                             f"{self.ignore.shape} must be the same (B, H, W)")
        if self.foreground.dtype != bool or self.ignore.dtype != bool:
            raise TypeError("foreground and ignore must be boolean")
        if (self.foreground & self.ignore).any():
            raise ValueError("a pixel cannot be both foreground and ignored")

    @classmethod
    def binary(cls, maps: np.ndarray, foreground: np.ndarray) -> ObjectMasks:
        """A rule without an uncertainty band: nothing is ignored."""
        return cls(maps, foreground, np.zeros_like(foreground, dtype=bool))

    @classmethod
    def concatenate(cls, parts: Sequence[ObjectMasks]) -> ObjectMasks:
        """The masks of consecutive pieces of one batch, in order."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("maps", "foreground", "ignore")))

    def labels(self, class_ids: Sequence[int]) -> np.ndarray:
        """(B, H, W) uint8 label maps: the sample's class id on the object, ``IGNORE_INDEX`` (255) on
        ignored pixels, 0 elsewhere."""
        ids = np.asarray(class_ids)
        if ids.shape != (len(self.maps),):
            raise ValueError(f"{len(ids)} class ids for {len(self.maps)} masks")
        if ((ids <= 0) | (ids >= IGNORE_INDEX)).any():
            raise ValueError(f"class ids must be in 1..{IGNORE_INDEX - 1} (0 is background), got {ids.tolist()}")
        out = np.where(self.foreground, ids[:, None, None], 0)
        return np.where(self.ignore, IGNORE_INDEX, out).astype(np.uint8)
