"""Process set-up shared by stage entry points and the CLI: params, threads, clean errors."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .params import ParamsError, load


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def run_stage(fn: Callable[..., None]) -> None:
    """Validate the whole params.yaml before any work, then run ``fn(params)``.

    Bad params and missing inputs end the process with a one-paragraph message, not a traceback.
    """
    try:
        params = load(os.environ.get("FREEMASK_PARAMS", "params.yaml"))
        fn(params)
    except (ParamsError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
