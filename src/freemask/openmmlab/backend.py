"""Training and evaluation with mmsegmentation 1.x (the optional ``mmseg`` extra).

Runs a config written by :mod:`.config` (``freemask mmseg-config``) through mmengine's
``Runner``. mmengine, mmcv, mmseg and mmdet are imported inside the functions: importing this
module needs none of them, and without them every entry point raises :class:`MMSegUnavailable`,
which names the extra and docs/mmseg.md. mmseg's Mask2Former needs mmcv *compiled with ops*
(``mmcv._ext``: the multi-scale deformable attention of the pixel decoder); a pure-Python
``mmcv-lite`` or a wheel built for another torch is refused up front rather than mid-run.

Checkpoints and torch >= 2.6: ``torch.load`` defaults to ``weights_only=True``, and mmengine
(0.10.x) calls it without the argument, so it refuses the checkpoints mmengine itself writes (they
pickle the message hub's ``HistoryBuffer`` and numpy values). :func:`trusted_checkpoints` is the
workaround: while a run is active, a ``torch.load`` of a file *under the run's own work_dir*
defaults to ``weights_only=False``; every other file (backbone weights included) keeps torch's
default, a call that passes ``weights_only`` itself is left alone, and ``torch.load`` is
restored when the run ends. Nothing stays patched after :func:`train` or :func:`evaluate` returns.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
from pathlib import Path

INSTALL_DOC = "docs/mmseg.md"
EXTRA_HINT = (f"install the `mmseg` extra: pip install -e '.[mmseg]', with mmcv compiled with its ops "
              f"(MMCV_WITH_OPS=1, about 30 min on 2 cores); see {INSTALL_DOC}")


class MMSegUnavailable(ImportError):
    """The ``mmseg`` extra is not installed, or mmcv lacks its compiled ops."""


def require_mmseg() -> None:
    """Import mmcv (with ``mmcv._ext``), mmengine, mmseg and mmdet's models, or raise :class:`MMSegUnavailable`."""
    for module in ("mmcv", "mmcv._ext", "mmengine", "mmseg", "mmseg.models", "mmdet.models"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            if module == "mmcv._ext":
                raise MMSegUnavailable(
                    f"mmcv is installed but its compiled ops (mmcv._ext) cannot be imported ({err}): it is mmcv-lite, "
                    f"or was built for another torch; rebuild it and {EXTRA_HINT}") from err
            raise MMSegUnavailable(f"the mmseg backend needs {module}, which cannot be imported ({err}); "
                                   f"{EXTRA_HINT}") from err
        except AssertionError as err:  # mmseg and mmdet assert the mmcv version range they support
            raise MMSegUnavailable(f"{module} refuses the installed mmcv ({err}); mmseg 1.2.2 needs mmcv >= 2.0.0rc4, "
                                   f"< 2.2.0; {EXTRA_HINT}") from err


def _is_under(file, roots: list[Path]) -> bool:
    if not isinstance(file, (str, os.PathLike)):
        return False  # an open file object: its origin is unknown
    path = Path(file).resolve()
    return any(path.is_relative_to(root) for root in roots)


@contextlib.contextmanager
def trusted_checkpoints(*dirs: str | Path):
    """Within the block, ``torch.load`` of a file under one of ``dirs`` defaults to ``weights_only=False``.

    For mmengine's own checkpoints (see the module docstring); only pass directories this run
    writes: unpickling with ``weights_only=False`` can run code from the file.
    """
    import torch

    roots = [Path(d).resolve() for d in dirs]
    original = torch.load

    def load(f, *args, **kwargs):
        if "weights_only" not in kwargs and _is_under(f, roots):
            kwargs["weights_only"] = False
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    return path


def _load_config(path: Path):
    """The mmengine Config of ``path``; mixed precision is dropped on a machine without CUDA, as the
    transformers backend ignores ``train.mixed_precision`` on the CPU."""
    import torch
    from mmengine.config import Config
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(path))
    if cfg.optim_wrapper.get("type") == "AmpOptimWrapper" and not torch.cuda.is_available():
        cfg.optim_wrapper.type = "OptimWrapper"
        cfg.optim_wrapper.pop("dtype", None)
    return cfg


def train(config_path: str | Path, resume: bool = False) -> Path:
    """Train with the config at ``config_path``; returns the work_dir holding the checkpoints and logs.

    ``resume``: continue from the last checkpoint in the work_dir (mmengine's ``resume``).
    """
    path = _existing(config_path, "mmseg config")
    require_mmseg()
    from mmengine.runner import Runner

    cfg = _load_config(path)
    cfg.resume = resume
    runner = Runner.from_cfg(cfg)
    with trusted_checkpoints(cfg.work_dir):
        runner.train()
    return Path(cfg.work_dir)


def evaluate(config_path: str | Path, checkpoint: str | Path) -> float:
    """mIoU in [0, 1] of ``checkpoint`` on the config's test split (mmseg's IoUMetric, percent / 100).

    A checkpoint outside the config's work_dir is loaded with torch's ``weights_only=True``: a
    plain state dict loads, a full mmengine checkpoint is refused with an error saying so.
    """
    path = _existing(config_path, "mmseg config")
    ckpt = _existing(checkpoint, "checkpoint")
    require_mmseg()
    from mmengine.runner import Runner

    cfg = _load_config(path)
    cfg.load_from, cfg.resume = str(ckpt), False
    runner = Runner.from_cfg(cfg)
    with trusted_checkpoints(cfg.work_dir):
        try:
            metrics = runner.test()
        except pickle.UnpicklingError as err:
            if _is_under(ckpt, [Path(cfg.work_dir).resolve()]):
                raise
            raise RuntimeError(f"checkpoint {ckpt} is not under the config's work_dir {cfg.work_dir}, so torch "
                               f"loads it with weights_only=True, which refuses it; move it into the work_dir "
                               f"if you trust it (see {INSTALL_DOC})") from err
    if "mIoU" not in metrics:
        raise KeyError(f"mmseg's test metrics have no mIoU (got {sorted(metrics)})")
    return float(metrics["mIoU"]) / 100.0
