"""`freemask doctor`: whether this machine has what a real-data profile needs, before `dvc repro`.

A profile is a folder ``pipelines/<name>/`` (a smoke configuration: ``pipelines/<name>_smoke/``) with a ``params.yaml``;
paths in it are relative to that folder, or absolute. :func:`diagnose` reads the keys below from it
(plain YAML, nothing else of the params) and returns one :class:`Line` per check, each naming the
params key, and for a problem the path and what to put there:

- ``generate.generator``: a complete diffusers pipeline folder (or a repo id in the HF cache);
- ``data.format`` / ``data.root`` / ``data.train_split`` / ``data.val_split``: the dataset layout, by
  the reader's own checks, and the first sample of each split read;
- ``profile.classes`` / ``profile.unseen``: every class is a class of that dataset;
- ``train.backbone_weights``: a readable state dict, if set;
- ``thesaurus.corpus``: a caption corpus whose first caption reads;
- ``profile.min_vram_gb``: a CUDA GPU with that much memory (0: none needed);
- ``profile.expected_disk_gb``: that much free disk where the profile's outputs go (its folder).

GB here are 2**30 bytes (as ``nvidia-smi`` and ``df -h`` count); a GPU passes within 0.5 GB of the
need, since a card sold as 24 GB reports a little less to torch.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

from ruamel.yaml import YAMLError

from .errors import DataError
from .params import parse_yaml

GIB = 2**30
VRAM_SLACK_GB = 0.5
FORMATS = ("voc", "cityscapes", "ade20k")
LAYOUTS = {
    "voc": "PASCAL VOC 2012, the VOCdevkit/VOC2012 folder (JPEGImages/, SegmentationClass/, "
           "ImageSets/Segmentation/<split>.txt)",
    "cityscapes": "Cityscapes (leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_gtFine_labelIds.png)",
    "ade20k": "ADE20K SceneParsing, the ADEChallengeData2016 folder (images/<split>/*.jpg, annotations/<split>/*.png)",
}
DIFFUSERS_LAYOUT = ("a diffusers Stable Diffusion pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, "
                    "scheduler/; e.g. stable-diffusion-v1-5 as saved by save_pretrained)")
# what each component folder must hold besides itself: alternatives per entry ("a|b": either)
COMPONENT_FILES = {
    "unet": ("config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"),
    "vae": ("config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"),
    "text_encoder": ("config.json", "model.safetensors|pytorch_model.bin"),
    "tokenizer": ("vocab.json|tokenizer.json", "merges.txt|tokenizer.json"),
    "scheduler": ("scheduler_config.json",),
}
CORPUS_HINT = ("a caption corpus (COCO's captions_train2017.json, a .txt of one caption a line, .jsonl, "
               "or a folder of LAION parquet shards)")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class Line:
    ok: bool
    key: str
    text: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'problem'} {self.key}: {self.text}"


class _Missing(Exception):
    """A params key that is absent or of the wrong type: its problem line."""

    def __init__(self, key: str, text: str):
        self.line = Line(False, key, text)


_REQUIRED = object()


def _get(params: dict, key: str, kind: type | tuple[type, ...], what: str, allow_none: bool = False,
         default=_REQUIRED):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not _REQUIRED:
                return default
            raise _Missing(key, f"missing from params.yaml: set it to {what}")
        node = node[part]
    if node is None and allow_none:
        return None
    if not isinstance(node, kind) or isinstance(node, bool):
        raise _Missing(key, f"{node!r} is not {what}")
    return node


def _path(folder: Path, value: str) -> Path:
    """A params path: absolute, or relative to the profile folder."""
    return Path(os.path.normpath(folder / Path(value).expanduser()))


def diagnose(folder: str | Path) -> list[Line]:
    """One line per check of the profile whose ``params.yaml`` is in ``folder``."""
    folder = Path(folder)
    params_file = folder / "params.yaml"
    if not params_file.is_file():
        return [Line(False, "params", f"{params_file} not found: a profile is a folder with a params.yaml")]
    try:
        params = parse_yaml(params_file.read_text())
    except YAMLError as err:
        return [Line(False, "params", f"{params_file} is not valid YAML: {' '.join(str(err).split())}")]
    if not isinstance(params, dict):
        return [Line(False, "params", f"{params_file}: expected a mapping of sections, got {type(params).__name__}")]
    lines = []
    for check in (_generator, _dataset, _classes, _backbone, _corpus, _gpu, _disk):
        try:
            lines += check(params, folder)
        except _Missing as missing:
            lines.append(missing.line)
    return list(dict.fromkeys(lines))  # a bad data.format, read by two checks, is named once


def _generator(params: dict, folder: Path) -> list[Line]:
    from .diffusion.models import resolve_model

    key = "generate.generator"
    value = _get(params, key, str, "a diffusers pipeline folder")
    local = _path(folder, value)
    repo_id = not local.exists() and _REPO_ID.fullmatch(value) and not value.startswith(".")
    try:
        found = resolve_model(value if repo_id else local)  # a repo id: its snapshot in the HF cache, on disk only
    except FileNotFoundError as err:
        where = str(err) if local.exists() else f"{local} not found"
        cache = f" (nor is {value!r} a model in the Hugging Face cache)" if repo_id else ""
        return [Line(False, key, f"{where}{cache}: put {DIFFUSERS_LAYOUT} there")]
    missing = []
    for component, files in COMPONENT_FILES.items():
        missing += [f"{component}/{alt.split('|')[0]}" for alt in files
                    if not any((found / component / f).is_file() for f in alt.split("|"))]
    if missing:
        return [Line(False, key, f"{found}: incomplete pipeline folder, no {', '.join(missing)}: put {DIFFUSERS_LAYOUT} there")]
    try:
        index = json.loads((found / "model_index.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return [Line(False, key, f"{found / 'model_index.json'} is not valid JSON ({err}): put {DIFFUSERS_LAYOUT} there")]
    return [Line(True, key, f"{found} ({index.get('_class_name', 'a diffusers pipeline')}: "
                            f"{', '.join(COMPONENT_FILES)})")]


def _reader(fmt: str):
    from .data import ade20k, cityscapes, voc

    return {"voc": voc, "cityscapes": cityscapes, "ade20k": ade20k}[fmt]


def _format(params: dict) -> str:
    fmt = _get(params, "data.format", str, f"one of {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise _Missing("data.format", f"{fmt!r} is not a dataset format: set it to one of {', '.join(FORMATS)}")
    return fmt


def _dataset(params: dict, folder: Path) -> list[Line]:
    fmt = _format(params)
    root = _path(folder, _get(params, "data.root", str, f"the folder of {LAYOUTS[fmt]}"))
    if not root.is_dir():
        return [Line(False, "data.root", f"{root} not found: put {LAYOUTS[fmt]} there")]
    reader, lines = _reader(fmt), []
    for key in ("data.train_split", "data.val_split"):
        try:
            split = _get(params, key, str, "a split name of the dataset")
            data = reader.dataset(root, split)
            _, image, _ = data[0]
        except _Missing as missing:
            lines.append(missing.line)
        except (FileNotFoundError, ValueError) as err:  # DataError is a ValueError
            lines.append(Line(False, key, f"{' '.join(str(err).split())}; expected {LAYOUTS[fmt]} in {root}"))
        else:
            lines.append(Line(True, key, f"{split}: {len(data)} image/label pairs in {root} (the first reads, "
                                         f"{image.shape[1]}x{image.shape[0]})"))
    return lines


def _classes(params: dict, folder: Path) -> list[Line]:
    fmt = _format(params)
    known = [c for c in _reader(fmt).CLASS_NAMES if c != "background"]
    classes = _get(params, "profile.classes", list, "the list of class names the profile trains on")
    if not classes or not all(isinstance(c, str) for c in classes):
        return [Line(False, "profile.classes", f"{classes!r} is not a non-empty list of class names")]
    wrong = []
    bad = [c for c in classes if c not in known]
    if bad:
        guesses = {c: get_close_matches(c.replace(" ", ""), known, 1, 0.6) for c in bad}
        named = ", ".join(f"{c!r}" + (f" (did you mean {g[0]!r}?)" if g else " (label 0, not a profile class)"
                                      if c == "background" else "") for c, g in guesses.items())
        wrong.append(f"{named} not {fmt} class(es): use names from the {fmt} reader's CLASS_NAMES ({', '.join(known)})")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        wrong.append(f"{', '.join(map(repr, duplicates))} listed twice: list each class once")
    lines = [Line(False, "profile.classes", "; ".join(wrong))] if wrong else []
    unseen = _get(params, "profile.unseen", list, "the list of unseen classes ([] for none)", default=[])
    outside = [c for c in unseen if c not in classes]
    if outside:
        lines.append(Line(False, "profile.unseen", f"{', '.join(map(repr, outside))} not in profile.classes: "
                                                   "the unseen classes are some of the profile's classes"))
    if not lines:
        lines.append(Line(True, "profile.classes", f"{len(classes)} {fmt} classes"
                                                   + (f", {len(unseen)} of them unseen" if unseen else "")))
    return lines


def _backbone(params: dict, folder: Path) -> list[Line]:
    key = "train.backbone_weights"
    # left out, it is null as in the params schema (freemask.params.Train)
    value = _get(params, key, str, "a state dict file (safetensors, .bin, .pt) or null", allow_none=True,
                 default=None)
    if value is None:
        return [Line(True, key, "not set: the backbone starts from random weights")]
    path = _path(folder, value)
    if not path.is_file():
        return [Line(False, key, f"{path} not found: put the backbone's state dict there (safetensors, .bin or .pt "
                                 "of model.backbone.state_dict()), or set the key to null")]
    try:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError, safe_open
            try:
                with safe_open(str(path), "pt") as f:  # the header only: no tensor is read
                    n = len(list(f.keys()))
            except SafetensorError as err:
                raise DataError(path, f"not a whole safetensors file ({err})") from None
        else:
            from .io import load_torch
            state = load_torch(path)
            if not isinstance(state, dict):
                raise DataError(path, f"holds a {type(state).__name__}, not a state dict")
            n = len(state)
    except DataError as err:
        return [Line(False, key, f"{err}: put a state dict there")]
    return [Line(True, key, f"{path} ({n} tensors)")]


def _corpus(params: dict, folder: Path) -> list[Line]:
    import polars as pl

    from . import thesaurus as th

    key = "thesaurus.corpus"
    path = _path(folder, _get(params, key, str, CORPUS_HINT))
    if "*" not in str(path) and not path.exists():
        return [Line(False, key, f"{path} not found: put {CORPUS_HINT} there")]
    try:
        fmt = th.corpus_format(path)
        first = th.scan_captions(path, fmt).head(1).collect()
    except (DataError, FileNotFoundError, pl.exceptions.PolarsError) as err:
        return [Line(False, key, f"{' '.join(str(err).split())}: put {CORPUS_HINT} there")]
    if first.height == 0:
        return [Line(False, key, f"{path} holds no caption: put {CORPUS_HINT} there")]
    return [Line(True, key, f"{path} ({fmt}; first caption: {first['caption'][0]!r})")]


def _number(params: dict, key: str, what: str) -> float:
    value = _get(params, key, (int, float), what)
    if value < 0:
        raise _Missing(key, f"{value} is negative: set it to {what}")
    return float(value)


def gpus() -> list[tuple[str, float]]:
    """(name, total memory in GB) of every CUDA device torch sees."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / GIB)
            for i in range(torch.cuda.device_count())]


def _gpu(params: dict, folder: Path) -> list[Line]:
    import torch

    key = "profile.min_vram_gb"
    need = _number(params, key, "the GPU memory the profile needs, in GB (0: CPU is fine)")
    found = gpus()
    seen = ", ".join(f"{name} {gb:.1f} GB" for name, gb in found) or "no CUDA GPU"
    if need == 0:
        return [Line(True, key, f"0: no GPU needed ({seen})")]
    if not found:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        return [Line(False, key, f"{need:g} GB of GPU memory needed, but torch {torch.__version__} ({build}) sees no "
                                 f"CUDA GPU: run on a machine with an NVIDIA GPU of {need:g} GB or more and a CUDA build "
                                 "of torch")]
    best = max(gb for _, gb in found)
    if best + VRAM_SLACK_GB < need:
        return [Line(False, key, f"{need:g} GB of GPU memory needed, the largest GPU here has {best:.1f} GB ({seen}): "
                                 "run on a larger GPU, or lower the batch size and this key with it")]
    return [Line(True, key, f"{need:g} GB needed: {seen}")]


def _disk(params: dict, folder: Path) -> list[Line]:
    key = "profile.expected_disk_gb"
    need = _number(params, key, "the free disk the profile's outputs need, in GB")
    free = shutil.disk_usage(folder).free / GIB
    if free < need:
        return [Line(False, key, f"{need:g} GB needed for the profile's outputs, {free:.1f} GB free on the disk of "
                                 f"{folder}: free space there, or put the profile on a larger disk")]
    return [Line(True, key, f"{need:g} GB needed, {free:.1f} GB free at {folder}")]
