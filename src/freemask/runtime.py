"""Process set-up shared by stage entry points and the CLI: params, threads, clean errors."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .distributed import LauncherEnvError
from .errors import DataError
from .io import write_json  # noqa: F401  (stage scripts import it from here)
from .params import ParamsError, load


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def run_stage(fn: Callable[..., None]) -> None:
    """Validate the whole params.yaml before any work, then run ``fn(params)`` with the replicate
    seed applied (:meth:`Params.replicated`).

    Bad params, a bad launcher environment (``RANK`` / ``WORLD_SIZE``), missing inputs and bad input
    files (:class:`freemask.errors.DataError`) end the process with a one-paragraph message and exit
    status 2, not a traceback.
    """
    try:
        params = load(os.environ.get("FREEMASK_PARAMS", "params.yaml"))
        fn(params.replicated())
    except (ParamsError, LauncherEnvError, DataError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        _close_progress_bars()
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def _close_progress_bars() -> None:
    """Finish the tqdm bars the failed work left open, so that the error starts a line of its own
    and is the last one (an open bar ends mid-line and is redrawn when it is collected)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
