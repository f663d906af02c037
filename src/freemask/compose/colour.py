"""sRGB <-> CIE L*a*b* (D65 white, 2° observer), vectorised in numpy float64.

No colour library is installed in the project's environment (neither scikit-image nor kornia), so
these are the standard formulas: the sRGB transfer curve (IEC 61966-2-1), the sRGB -> XYZ matrix,
and CIE 1976 L*a*b* against the D65 white point. tests/test_harmonize.py checks them against published reference values.
"""
from __future__ import annotations

import numpy as np

_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB, uint8 or float in [0, 1] -> (..., 3) float64 L* in [0, 100], a*, b*."""
    c = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else np.asarray(rgb, np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (lin @ _RGB_TO_XYZ.T) / _WHITE_D65
    f = np.where(t > _DELTA**3, np.cbrt(t), t / (3 * _DELTA**2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) L*a*b* -> (..., 3) float64 sRGB, clipped to [0, 1] (out-of-gamut colours included)."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], -1)
    t = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE_D65
    lin = np.clip(t @ _XYZ_TO_RGB.T, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055).clip(0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float sRGB in [0, 1] -> uint8, rounded half up."""
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
