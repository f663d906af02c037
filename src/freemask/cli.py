"""The `freemask` command line: the pipeline's pieces for use on their own."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _params(path: Path):
    from .params import ParamsError, load

    try:
        return load(path)
    except ParamsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("check-params")
def check_params(path: Path = typer.Argument(Path("params.yaml"), help="params file to validate")) -> None:
    """Validate a params file; exits 2 naming every bad dotted key."""
    _params(path)
    typer.echo(f"{path}: ok")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help='e.g. "a photo of a car on the road"'),
    out: Path = typer.Option(..., "--out", help="folder for image.png, mask.png, attention.png"),
    word: str = typer.Option("", help="word whose attention becomes the mask (default: the first class word)"),
    generator: Path = typer.Option(Path("models/generator"), help="generator folder (diffusers layout)"),
    seed: int = typer.Option(0),
    params: Path = typer.Option(Path("params.yaml"), help="steps, guidance, resolutions and threshold come from `generate`"),
) -> None:
    """Generate one image and its mask from a prompt."""
    import numpy as np
    import torch
    from PIL import Image

    from .generators.attention import token_positions
    from .generators.masking import masks_from_store, new_store
    from .generators.sampling import sample
    from .generators.toy import ToyGenerator
    from .world.spec import CLASSES

    cfg = _params(params).generate
    torch.set_num_threads(cfg.threads)
    try:
        gen = ToyGenerator.load(generator)
        word = word or next((w for w in prompt.split() if w in CLASSES), "")
        if not word:
            raise KeyError(f"no class word in {prompt!r}; pass --word")
        store = new_store(torch.tensor([[token_positions(gen.tokenizer, prompt, word)[0]]]), cfg)
        image = sample(gen, [prompt], [seed], cfg.steps, cfg.guidance, store, record_max_timestep=cfg.max_timestep,
                       guidance_max_timestep=cfg.guidance_max_timestep)[0]
    except (KeyError, FileNotFoundError) as err:
        typer.echo(f"error: {err.args[0] if err.args else err}", err=True)
        raise typer.Exit(2) from None
    try:
        masks = masks_from_store(store, image.shape[0], cfg, [word])
    except KeyError as err:  # diffumask: a word with no per-class params
        typer.echo(f"error: {err.args[0] if err.args else err}", err=True)
        raise typer.Exit(2) from None
    amap, mask, ignore = masks.maps[0], masks.foreground[0], masks.ignore[0]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out / "image.png")
    # object 255, undecided pixels (rules with an uncertainty band) 128, background 0
    Image.fromarray(np.where(mask, 255, np.where(ignore, 128, 0)).astype(np.uint8)).save(out / "mask.png")
    Image.fromarray((amap * 255 + 0.5).astype(np.uint8)).save(out / "attention.png")
    undecided = f", {ignore.mean():.0%} undecided" if ignore.any() else ""
    typer.echo(f"wrote {out}/image.png, mask.png, attention.png (mask covers {mask.mean():.0%}{undecided})")


@app.command()
def world(out: Path = typer.Option(Path("data/world"), "--out"), params: Path = typer.Option(Path("params.yaml"))) -> None:
    """Render the toy world (as the `world` stage, to any folder)."""
    from .world.build import build_world

    build_world(_params(params).world, out)


if __name__ == "__main__":
    app()
