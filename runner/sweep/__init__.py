"""Stage 4, sweeps: the spec (``spec``), the resumable sweep folder (``store``),
the driver that turns group searches into runs (``driver``), and where they run
(``executors``: here or on a Ray cluster)."""

from .driver import run_sweep
from .spec import SweepSpec, load_spec
from .store import SweepStore

__all__ = ["SweepSpec", "SweepStore", "load_spec", "run_sweep"]
