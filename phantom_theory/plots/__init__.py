"""Figures. Each function takes a Dataset (or the numbers phantom_theory computed)
and returns a matplotlib Figure; no formula lives here."""

from .common import save_figure
from .sweep import plot_sweep
from .theory import plot_calibration, plot_classes, plot_levels
from .trajectory import plot_trajectory

__all__ = ["plot_calibration", "plot_classes", "plot_levels", "plot_sweep", "plot_trajectory",
           "save_figure"]
