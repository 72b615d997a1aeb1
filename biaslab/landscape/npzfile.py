"""Atomic writes of .npz files, so that an interrupted write never leaves a truncated file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a temporary file next to ``path``, then rename it over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)
