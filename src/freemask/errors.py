"""The error for bad input files: :func:`freemask.runtime.run_stage` and the CLI turn it into one
``error: <message>`` line and exit status 2, never a traceback from inside tarfile, PIL or torch.

Raise :class:`DataError` where a file is read and its path is known, for what is wrong with the
file's *content* (truncated, corrupt, a value outside what the file may hold). A missing file stays
a ``FileNotFoundError``; a bug stays whatever it is -- wrap only the errors of reading the file.
"""
from __future__ import annotations

from pathlib import Path

import yaml


class DataError(ValueError):
    """An input file (or folder) that exists but cannot be read as what it should be.

    The message is one line: the params ``key`` that named the file (if one did), the path (and
    ``line`` in it), what is wrong, and how to get a good one (``hint``).
    """

    def __init__(self, path: str | Path, problem: str, hint: str | None = None, line: int | None = None,
                 key: str | None = None):
        self.path = Path(path)
        message = (f"{key}: " if key else "") + f"{path}{'' if line is None else f' line {line}'}: {problem}"
        message += f"; {hint}" if hint else ""
        super().__init__(" ".join(message.split()))  # one line, whatever the wrapped error's text


def reason(err: BaseException) -> str:
    """A wrapped library error as a short phrase: its type and first line of text."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def stage_hint(path: str | Path, dvc_file: str | Path = "dvc.yaml") -> str | None:
    """How to get ``path`` again when a stage writes it: the stage of ``dvc_file`` (in the working
    directory, where DVC runs stages) whose output holds it; None when no stage does."""
    stage = _stage_writing(Path(path), Path(dvc_file))
    return f"re-run the `{stage}` stage, which writes it" if stage else None


def _stage_writing(path: Path, dvc_file: Path) -> str | None:
    try:
        stages = yaml.safe_load(dvc_file.read_text()).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    target = path.resolve()
    for name, stage in stages.items():
        for out in (stage or {}).get("outs", []) if isinstance(stage, dict) else []:
            out = (dvc_file.parent / (next(iter(out)) if isinstance(out, dict) else str(out))).resolve()
            if target == out or out in target.parents:
                return name
    return None
