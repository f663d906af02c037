"""freemask: synthetic semantic-segmentation datasets from a text-to-image diffusion model (Free-Mask)."""
__version__ = "0.1.0"
