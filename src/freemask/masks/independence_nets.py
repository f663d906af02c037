"""The networks of the Independence-Prior GAN (Dai et al., AAAI; ``freemask.masks.independence``),
scaled down from the seed's appendix tables for the toy world's small crops (docs/independence.md).

- :class:`MaskUNet` -- the foreground provider (and the distilled student) of application 1, Table 1's
  UNet: 4x4 stride-2 convolutions with BatchNorm and leaky ReLU down to 1x1, 4x4 stride-2
  transposed convolutions back up with UNet skips, one sigmoid channel: the soft mask.
- :class:`Discriminator` -- Tables 1 and 2's SN-GAN discriminator: 3x3 stride-2 convolutions, one
  3x3 stride-1 convolution and a 1x1 convolution to one logit per position, every layer spectrally
  normalised (``torch.nn.utils.parametrizations.spectral_norm``).
- :class:`InstanceGenerator` -- application 2's provider, Table 2's generator: noise ``z`` -> an RGBA
  instance, through a dense layer to a small map, two 4x4 stride-1 convolutions and 4x4 stride-2
  transposed convolutions, sigmoid on all four channels.

Widths are the seed's divided by ``4`` (``width`` = 16 for the seed's 64); the number of stride-2
levels follows the input side (the seed's 128 px UNet has 6 levels down to 1x1, a 32 px one 5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

_SLOPE = 0.2  # leaky ReLU slope (the seed's "lReLU"; SN-GAN and pix2pix use 0.1-0.2)


def _levels(side: int, smallest: int) -> int:
    if side < 2 * smallest or side & (side - 1):
        raise ValueError(f"independence.crop_side must be a power of two >= {2 * smallest}, got {side}")
    return int(math.log2(side // smallest))


@dataclass(frozen=True)
class NetShape:
    """What a saved provider, student or discriminator needs to be rebuilt."""

    side: int = 32  # input side (square crops)
    width: int = 16  # channels of the first level (the seed: 64)


class MaskUNet(nn.Module):
    """(B, 3, S, S) image in [-1, 1] -> (B, 1, S, S) soft mask in (0, 1)."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        n = _levels(shape.side, 1)
        widths = [shape.width * min(2 ** i, 8) for i in range(n)]  # the seed: 64 128 256 512 512 512
        self.down = nn.ModuleList()
        c_in = 3
        for i, c in enumerate(widths):
            k = 2 if i == n - 1 and shape.side > 2 else 4  # the seed's last 2x2 conv to 1x1
            layers = [nn.Conv2d(c_in, c, k, 2, 1 if k == 4 else 0)]
            if i not in (0, n - 1):  # no BatchNorm on the image input nor on the 1x1 bottleneck (batch statistics of one pixel)
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(_SLOPE))
            self.down.append(nn.Sequential(*layers))
            c_in = c
        self.up = nn.ModuleList()
        for i in reversed(range(n - 1)):
            k = 2 if i == n - 2 and shape.side > 2 else 4
            c_skip = widths[i]
            c_in_up = c_in if i == n - 2 else 2 * c_in
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in_up, c_skip, k, 2, 1 if k == 4 else 0),
                                         nn.BatchNorm2d(c_skip), nn.LeakyReLU(_SLOPE)))
            c_in = c_skip
        self.out = nn.ConvTranspose2d(2 * c_in if n > 1 else c_in, 1, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()
        for i, layer in enumerate(self.up):
            x = layer(x if i == 0 else torch.cat([x, skips.pop()], 1))
        x = torch.cat([x, skips.pop()], 1) if self.up else x
        return torch.sigmoid(self.out(x))


class Discriminator(nn.Module):
    """(B, 3, S, S) image in [-1, 1] -> (B, P, P) logits, one per patch (P = 4 for every side)."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        n = _levels(shape.side, 4)  # the seed: 128 px -> 8x8 with 4 stride-2 layers; here down to 4x4
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(n):
            c = shape.width * min(2 ** i, 8)
            layers += [spectral_norm(nn.Conv2d(c_in, c, 3, 2, 1)), nn.LeakyReLU(_SLOPE)]
            c_in = c
        c = max(shape.width, c_in // 2)  # the seed's 3x3 stride-1 layer halves the width (512 -> 256)
        layers += [spectral_norm(nn.Conv2d(c_in, c, 3, 1, 1)), nn.LeakyReLU(_SLOPE),
                   spectral_norm(nn.Conv2d(c, 1, 1))]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[:, 0]  # logits; the seed's sigmoid is inside the loss (BCE with logits)


@dataclass(frozen=True)
class GeneratorShape:
    """Application 2's instance generator: noise size and output side."""

    z_dim: int = 5
    side: int = 32
    width: int = 16


class InstanceGenerator(nn.Module):
    """(B, z_dim) noise -> (B, 4, S, S) RGBA in (0, 1): an appearance (RGB) and its soft mask (A)."""

    def __init__(self, shape: GeneratorShape = GeneratorShape()):
        super().__init__()
        self.shape = shape
        self.start = max(4, shape.side // 8)  # the seed: 64 px from 8x8 through 3 stride-2 layers
        n_up = _levels(shape.side, self.start)
        w = shape.width * 4  # the seed: 256
        self.fc = nn.Sequential(nn.Linear(shape.z_dim, w * self.start ** 2), nn.BatchNorm1d(w * self.start ** 2),
                                nn.LeakyReLU(_SLOPE))
        layers: list[nn.Module] = []
        for _ in range(2):  # the seed's two 4x4 stride-1 convolutions ("same" padding)
            layers += [nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(w, w, 4), nn.BatchNorm2d(w), nn.LeakyReLU(_SLOPE)]
        c = w
        for i in range(n_up):
            last = i == n_up - 1
            c_out = 4 if last else max(shape.width, c // 2)
            layers.append(nn.ConvTranspose2d(c, c_out, 4, 2, 1))
            if not last:
                layers += [nn.BatchNorm2d(c_out), nn.LeakyReLU(_SLOPE)]
            c = c_out
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.fc[0].out_features // self.start ** 2
        return torch.sigmoid(self.body(self.fc(z).view(len(z), w, self.start, self.start)))


class CodePredictor(nn.Module):
    """InfoGAN's Q network for application 2's information term: an RGBA instance (B, 4, S, S) in
    (0, 1) -> (B, z_dim), the noise that made it."""

    def __init__(self, shape: GeneratorShape = GeneratorShape()):
        super().__init__()
        w = shape.width
        self.body = nn.Sequential(nn.Conv2d(4, w, 4, 2, 1), nn.LeakyReLU(_SLOPE),
                                  nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(_SLOPE),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, shape.z_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
