"""What every figure shares: the backend, the palette and atomic saving."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import check_output_path  # noqa: E402

CORRECT, COMPETITOR = "#1b7837", "#b2182b"
PHI, SIGNAL, DRAG = "#2c2c2c", "#2166ac", "#e08214"


def save_figure(fig, path, overwrite: bool = False):
    """Save atomically (temporary file, then rename); refuses to replace a file
    unless ``overwrite``."""
    path = check_output_path(path, overwrite)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
