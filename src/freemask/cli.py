"""The `freemask` command line: the pipeline's pieces for use on their own."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@contextmanager
def _exit_on(*errors: type[Exception]) -> Iterator[None]:
    """The expected ``errors``, and a bad input file (:class:`freemask.errors.DataError`) always, end
    the command with ``error: <message>`` on stderr and status 2."""
    from .errors import DataError

    try:
        yield
    except (DataError, *errors) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def _params(path: Path):
    from .params import ParamsError, load

    with _exit_on(ParamsError):
        return load(path)


@app.command("check-params")
def check_params(path: Path = typer.Argument(Path("params.yaml"), help="params file to validate")) -> None:
    """Validate a params file; exits 2 naming every bad dotted key."""
    _params(path)
    typer.echo(f"{path}: ok")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help='e.g. "a photo of a car on the road"'),
    out: Path = typer.Option(..., "--out", help="folder for image.png, mask.png, attention.png"),
    word: str = typer.Option("", help="word or phrase whose attention becomes the mask (default: the first class "
                                      "word or sub-class phrase of the profile in the prompt)"),
    generator: Optional[Path] = typer.Option(None, help="a toy generator or a diffusers Stable Diffusion folder "
                                                        "(default: generate.generator of the params)"),
    seed: int = typer.Option(0),
    params: Path = typer.Option(Path("params.yaml"), help="the generator, sampler, steps, guidance, resolutions and "
                                                          "mask rule come from `generate`, the classes from `profile`"),
) -> None:
    """Generate one image and its mask from a prompt, as the generate stage makes its samples."""
    import numpy as np
    import torch
    from PIL import Image

    from .diffusion.models import load_generator
    from .generate.dataset import attention_masks
    from .generate.plan import PlannedSample
    from .io import write_with
    from .labels import from_profile
    from .masks.rules import check_fits
    from .params import ParamsError

    p = _params(params)
    cfg = p.generate if generator is None else p.generate.model_copy(update={"generator": str(generator)})
    labels = from_profile(p.profile)
    torch.set_num_threads(cfg.threads)
    phrases = {phrase: cls for cls in labels.classes for phrase in (cls, *labels.varieties.get(cls, ()))}
    with _exit_on(KeyError, FileNotFoundError, ParamsError, ValueError):
        word = word or next((ph for ph in sorted(phrases, key=len, reverse=True) if f" {ph} " in f" {prompt} "), "")
        if not word:
            raise KeyError(f"no class word of the profile in {prompt!r}; pass --word")
        gen = load_generator(cfg.generator)
        check_fits(cfg, gen.unet, side=gen.latent_side(cfg.height))
        cls = phrases.get(word, word)
        fixed = replace(labels, varieties={cls: (word,)})  # record the asked word, whatever the seed would pick
        image, masks = attention_masks(gen, [PlannedSample("cli", prompt, cls, "", seed)], cfg, fixed)
    image, amap, mask, ignore = image[0], masks.maps[0], masks.foreground[0], masks.ignore[0]
    # object 255, undecided pixels (rules with an uncertainty band) 128, background 0
    pngs = {"image.png": image, "mask.png": np.where(mask, 255, np.where(ignore, 128, 0)).astype(np.uint8),
            "attention.png": (amap * 255 + 0.5).astype(np.uint8)}
    for name, array in pngs.items():  # each whole or not at all
        write_with(out / name, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG"))
    undecided = f", {ignore.mean():.0%} undecided" if ignore.any() else ""
    typer.echo(f"wrote {out}/image.png, mask.png, attention.png (mask covers {mask.mean():.0%}{undecided})")


def _ints(text: str, n: int, option: str) -> tuple[int, ...]:
    """``n`` comma-separated integers, or a ValueError naming ``option``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise ValueError(f"{option} {text!r}: expected {n} comma-separated integers")
    return values


@app.command()
def paintseg(
    image: Path = typer.Argument(..., help="an RGB image (PNG)"),
    out: Path = typer.Option(..., "--out", help="the mask PNG to write (object 255, background 0)"),
    prompt: str = typer.Option(..., "--prompt", help='the painter\'s text prompt, e.g. "a photo of a car on the road"'),
    background_prompt: Optional[str] = typer.Option(None, "--background-prompt",
                                                    help='the I-step\'s prompt, e.g. "a photo of the road" '
                                                         '(default: --prompt)'),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1: the object's box (x1, y1 exclusive)"),
    point: Optional[str] = typer.Option(None, "--point", help="x,y: a pixel on the object"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="a coarse mask PNG of the image's size (nonzero: object)"),
    generator: Optional[Path] = typer.Option(None, help="the RePaint generator (default: paintseg.generator)"),
    seed: Optional[int] = typer.Option(None, help="default: paintseg.seed"),
    params: Path = typer.Option(Path("params.yaml"), help="the settings come from its `paintseg` section"),
) -> None:
    """Segment the object of one image with PaintSeg (AMCP), from a box, a point or a coarse mask."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from .io import write_with
    from .masks.paintseg import (features_from_params, initial_mask_from_box, initial_mask_from_point, paintseg,
                                 painter_from_params)

    cfg = _params(params).paintseg
    if generator is not None:
        cfg = cfg.model_copy(update={"generator": str(generator)})
    torch.set_num_threads(cfg.threads)
    with _exit_on(FileNotFoundError, ValueError, KeyError, UnidentifiedImageError):
        if sum(x is not None for x in (box, point, mask)) != 1:
            raise ValueError("give exactly one of --box, --point, --mask")
        if not image.is_file():
            raise FileNotFoundError(f"{image}: no such image")
        rgb = np.array(Image.open(image).convert("RGB"))
        features = features_from_params(cfg)
        if box is not None:
            initial = initial_mask_from_box(_ints(box, 4, "--box"), rgb.shape[:2])
        elif point is not None:
            initial = initial_mask_from_point(rgb, _ints(point, 2, "--point"), features)
        else:
            if not mask.is_file():
                raise FileNotFoundError(f"{mask}: no such mask")
            initial = np.asarray(Image.open(mask).convert("L")) > 0
            if initial.shape != rgb.shape[:2]:
                raise ValueError(f"{mask}: mask is {initial.shape[1]}x{initial.shape[0]}, the image "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}")
        painter = painter_from_params(cfg)  # the inputs are checked before any model loads
        refined = paintseg(rgb[None], initial[None], painter, features, cfg, [cfg.seed if seed is None else seed],
                           [prompt], None if background_prompt is None else [background_prompt], progress=False)[0]
    png = np.where(refined, 255, 0).astype(np.uint8)
    write_with(out, lambda tmp: Image.fromarray(png).save(tmp, format="PNG"))
    typer.echo(f"wrote {out} (mask covers {refined.mean():.0%}; the initial mask covered {initial.mean():.0%})")


@app.command()
def world(out: Path = typer.Option(Path("data/world"), "--out"), params: Path = typer.Option(Path("params.yaml"))) -> None:
    """Render the toy world (as the `world` stage, to any folder)."""
    from .world.build import build_world

    build_world(_params(params).world, out)


@app.command()
def thesaurus(
    corpus: Path = typer.Argument(..., help="captions: .txt (one per line), .jsonl, .parquet (file or folder of shards), "
                                            "COCO-captions .json"),
    out: Path = typer.Option(Path("thesaurus.csv"), help="the table: object, background, n_background, n_both, R"),
    vocabulary: Optional[Path] = typer.Option(None, help="YAML: objects / backgrounds -> lists of words; "
                                                         "default: the toy world's"),
    fmt: str = typer.Option("auto", "--format", help="auto (from the suffix) | txt | jsonl | parquet | coco"),
    field: str = typer.Option("caption", help="the caption column of JSONL and parquet (LAION: TEXT)"),
    heatmap: Optional[Path] = typer.Option(None, help="also draw R(o, b) here (PNG)"),
) -> None:
    """The Adaptive Matching Thesaurus R(o, b) of any caption corpus (paper eq. 3): the share of the
    captions mentioning background b that also mention object o."""
    from . import thesaurus as th

    if fmt not in ("auto", *th.FORMATS):
        typer.echo(f"error: --format {fmt!r}: one of auto, {', '.join(th.FORMATS)}", err=True)
        raise typer.Exit(2)
    with _exit_on(FileNotFoundError):
        vocab = th.toy_vocabulary() if vocabulary is None else th.load_vocabulary(vocabulary)
        counts = th.count(th.scan_captions(corpus, fmt, field), vocab, source=corpus)
    table = th.table(counts)
    th.write_csv(table, out)
    if heatmap is not None:
        th.heatmap(table, heatmap)
    typer.echo(f"{corpus}: {counts['captions']} captions -> {out}")


@app.command()
def doctor(
    profile: Optional[str] = typer.Option(None, help="voc, cityscapes, voc_zero_shot, ade20k, or a smoke "
                                          "configuration such as voc_smoke (default: every profile in --pipelines)"),
    pipelines: Path = typer.Option(Path("pipelines"), help="the folder of the profiles, pipelines/<name>/params.yaml"),
) -> None:
    """Check what a real-data profile needs: weights, dataset layout and classes, caption corpus,
    GPU memory and free disk. One line per check; exits 2 when anything is missing."""
    from .doctor import diagnose

    folders = [pipelines / profile] if profile else sorted(p.parent for p in pipelines.glob("*/params.yaml"))
    if not folders or not (folders[0] / "params.yaml").is_file():
        names = [str(p.parent.relative_to(pipelines)) for pattern in ("*/params.yaml", "*/*/params.yaml")
                 for p in sorted(pipelines.glob(pattern))]
        where = folders[0] / "params.yaml" if folders else pipelines / "<name>" / "params.yaml"
        typer.echo(f"error: no {where} (profiles in {pipelines}: {', '.join(names) or 'none'})", err=True)
        raise typer.Exit(2)
    problems = 0
    for folder in folders:
        lines = diagnose(folder)
        problems += sum(not line.ok for line in lines)
        if len(folders) > 1:
            typer.echo(f"== {folder}")
        for line in lines:
            typer.echo(str(line))
    if problems:
        typer.echo(f"doctor: {problems} problem(s); fix the lines above, then run it again", err=True)
        raise typer.Exit(2)
    typer.echo(f"doctor: every check passed ({', '.join(str(f) for f in folders)})")


@app.command("mmseg-config")
def mmseg_config(
    dataset: str = typer.Argument(..., help="voc, cityscapes, ade20k or toy (the toy world's data/world/voc)"),
    out: Path = typer.Option(..., "--out", help="the .py config to write"),
    params: Path = typer.Option(Path("params.yaml"), help="schedule, seed and backbone come from `train`"),
    data_root: Optional[Path] = typer.Option(None, help="dataset root (default: mmseg's place for it)"),
    work_dir: Optional[Path] = typer.Option(None, help="checkpoints and logs "
                                            "(default: models/mmseg/<dataset>_<backbone>)"),
    backbone_weights: Optional[Path] = typer.Option(None, help="local backbone weights in mmseg's layout "
                                                    "(overrides train.backbone_weights)"),
    num_workers: int = typer.Option(2, help="data loader workers per split"),
    deterministic: bool = typer.Option(False, help="mmengine randomness.deterministic"),
) -> None:
    """Write an mmsegmentation 1.x Mask2Former config from the params (see docs/mmseg.md)."""
    from .openmmlab.config import build_config, write_config

    cfg = _params(params).train
    with _exit_on(ValueError, FileNotFoundError):
        config = build_config(dataset, cfg, data_root=data_root, work_dir=work_dir, backbone_weights=backbone_weights,
                              num_workers=num_workers, deterministic=deterministic)
        write_config(config, out, header=f"mmseg 1.x Mask2Former config for {dataset!r}, written by "
                                         f"`freemask mmseg-config` from {params} (train section)")
    typer.echo(f"wrote {out} ({dataset}, backbone {cfg.backbone}, {cfg.steps} iterations)")


@app.command("mmseg-train")
def mmseg_train(config: Path = typer.Argument(..., help="a config written by `freemask mmseg-config`"),
                resume: bool = typer.Option(False, help="continue from the work_dir's last checkpoint")) -> None:
    """Train with mmsegmentation (needs the `mmseg` extra, see docs/mmseg.md)."""
    from .openmmlab.backend import MMSegUnavailable, train

    with _exit_on(MMSegUnavailable, FileNotFoundError):
        work_dir = train(config, resume=resume)
    typer.echo(f"trained: checkpoints and logs in {work_dir}")


@app.command("mmseg-eval")
def mmseg_eval(config: Path = typer.Argument(..., help="a config written by `freemask mmseg-config`"),
               checkpoint: Path = typer.Argument(..., help="a checkpoint from the config's work_dir")) -> None:
    """mIoU of an mmsegmentation checkpoint on the config's test split."""
    from .openmmlab.backend import MMSegUnavailable, evaluate

    with _exit_on(MMSegUnavailable, FileNotFoundError):
        miou = evaluate(config, checkpoint)
    typer.echo(f"mIoU {miou:.4f}")


@app.command()
def spread(
    rev: list[str] = typer.Option(["HEAD"], help="the baseline commit; its DVC experiments are the other runs. "
                                  "Repeat it to add the runs of more commits: runs of the same params group together"),
    out: Path = typer.Option(Path("metrics/spread.json"), help="where the groups' spread goes"),
    baseline: Optional[Path] = typer.Option(None, help="also write the regression baseline here, from the "
                                            "group of the baseline commit's own params"),
    k: float = typer.Option(4.0, help="baseline tolerance: k x the seed sd ..."),
    floor: float = typer.Option(0.01, help="... and at least this"),
    keep: Optional[Path] = typer.Option(None, help="an earlier spread file whose groups the runs of --rev lack "
                                        "are kept, each marked with its own commit"),
) -> None:
    """Mean ± sd of the guarded metrics over runs that differ only in `seed` (queue them with
    `dvc exp run --queue -S 'seed=range(1,5)'`), per group of params."""
    from .io import read_json, write_json
    from .metrics.spread import SpreadError, groups, keep_earlier, runs_of
    from .metrics.spread import baseline as make_baseline
    from .reports.tables import spread_table

    with _exit_on(SpreadError):
        every = runs_of(".", rev)
        found = groups(every)
        base = make_baseline(found[0], k, floor) if baseline is not None else None
    if keep is not None:
        with _exit_on(FileNotFoundError, KeyError):
            found = keep_earlier(found, every[0]["rev"], read_json(keep))
    write_json(out, {"baseline_rev": every[0]["rev"], "groups": found})
    typer.echo(spread_table(found))
    if base is not None:
        write_json(baseline, base)
        typer.echo(f"wrote {out} and {baseline} ({len(base['metrics'])} metrics, tolerance max({k:g} sd, {floor:g}), "
                   "per-class sd pooled over the classes when larger)")


@app.command()
def queue(
    sweeps: list[str] = typer.Argument(..., help="table5 (the image-editing ablations), rules (the baseline mask "
                                       "rules), retention (Figure 9), or all"),
    seeds: str = typer.Option("0-2", help="the replicate seeds, FIRST-LAST"),
    dry_run: bool = typer.Option(False, help="print the commands without queueing them"),
) -> None:
    """Queue every row of the named sweeps as DVC experiments (`dvc exp run --queue`), each over the
    seeds; `dvc queue start -j 1` runs them and `freemask spread` compares them."""
    import subprocess

    from .reports.ablations import SWEEPS, queue_args

    names = list(SWEEPS) if sweeps == ["all"] else sweeps
    first, _, last = seeds.partition("-")
    with _exit_on(KeyError, ValueError):
        span = (int(first), int(last or first) + 1)
        if span[1] <= span[0]:
            raise ValueError(f"--seeds {seeds}: LAST must not be below FIRST")
        commands = [args for name in names for args in queue_args(name, span)]
    for args in commands:
        typer.echo(" ".join(args))
        if not dry_run:
            done = subprocess.run(args, capture_output=True, text=True)
            if done.returncode != 0:
                typer.echo(f"error: {' '.join(args)} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}",
                           err=True)
                raise typer.Exit(2)
    typer.echo(f"{len(commands)} commands ({len(commands) * (span[1] - span[0])} experiments); "
               "run them with `dvc queue start -j 1`")


@app.command()
def regress(baseline: Path = typer.Option(Path("metrics/baseline.json"), help="written by `freemask spread --baseline`"),
            root: Path = typer.Option(Path("."), help="the work tree whose metrics are checked")) -> None:
    """Compare this run's metrics with the committed baseline; exit 1 when one fell below mean − tolerance."""
    from .errors import DataError
    from .metrics.spread import SpreadError, check, load_baseline, workspace_metrics

    with _exit_on(SpreadError, DataError):
        base = load_baseline(baseline)
        bad = check(workspace_metrics(root), base)
    n = len(base["metrics"])
    if not bad:
        typer.echo(f"regression check: {n} metrics within tolerance of {baseline}")
        return
    typer.echo(f"regression check: {len(bad)} of {n} metrics fell below the baseline ({baseline}):")
    typer.echo("| metric | value | baseline mean | sd | tolerance |\n|---|---|---|---|---|")
    for r in bad:
        v = "missing" if r["value"] is None else f"{r['value']:.4f}"
        typer.echo(f"| {r['metric']} | {v} | {r['mean']:.4f} | {r['sd']:.4f} | {r['tolerance']:.4f} |")
    raise typer.Exit(1)


if __name__ == "__main__":
    app()
