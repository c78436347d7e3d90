"""What every figure shares: the backend, the palette and atomic saving."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..errors import PhantomError  # noqa: E402
from ..io import atomic_write, check_output_path  # noqa: E402

CORRECT, COMPETITOR = "#1b7837", "#b2182b"
PHI, SIGNAL, DRAG = "#2c2c2c", "#2166ac", "#e08214"


FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def check_figure_path(path, overwrite: bool = False):
    """Refuse an output whose suffix names no image format matplotlib writes, or
    that exists without ``overwrite``, before anything is drawn."""
    from pathlib import Path

    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise PhantomError(f"cannot save a figure as {path!r}: its suffix names no image "
                           f"format; use one of .{', .'.join(FIGURE_FORMATS[:3])}")
    return check_output_path(path, overwrite)


def save_figure(fig, path, overwrite: bool = False):
    """Save atomically; refuses to replace a file unless ``overwrite``."""
    check_figure_path(path, overwrite)
    try:
        with atomic_write(path, overwrite) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
