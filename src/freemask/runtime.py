"""Process set-up shared by stage entry points and the CLI: params, threads, clean errors."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .distributed import LauncherEnvError
from .io import write_json  # noqa: F401  (stage scripts import it from here)
from .params import ParamsError, load


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def run_stage(fn: Callable[..., None]) -> None:
    """Validate the whole params.yaml before any work, then run ``fn(params)`` with the replicate
    seed applied (:meth:`Params.replicated`).

    Bad params, a bad launcher environment (``RANK`` / ``WORLD_SIZE``) and missing inputs end the process
    with a one-paragraph message, not a traceback.
    """
    try:
        params = load(os.environ.get("FREEMASK_PARAMS", "params.yaml"))
        fn(params.replicated())
    except (ParamsError, LauncherEnvError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


