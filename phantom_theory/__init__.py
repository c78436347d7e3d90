"""phantom-theory: the pure computation of near-synonym fine-tuning, in the order the
data flows (THEORY.md). Nothing here imports torch or ``runner``; ``runner`` trains
the models and calls in.

- ``order_parameter``  Phi = signal + drag, and the exact readout/geometry attribution
- ``outcomes``         a trajectory's outcome and failure mode
- ``jumps``            jump events in Phi and the phantom test
- ``trajectory``       the trajectory Dataset of one run (build, annotate, open, write)
- ``critical_lr``      the eta_c and eta_max searches of a group
- ``sweep``            the sweep Dataset: every run, eta_c per group and architecture
- ``quantities``       dimensionless quantities at initialisation (the pure part)
- ``theory/``          the tidy table, the theory models (``theory/models/``, one file
                       each), fitting, comparison, blind prediction, simulation
- ``plots/``           figures: a Dataset in, a matplotlib Figure out, no formulas
- ``report``           one self-contained HTML report of a results folder
- ``schema``, ``io``, ``options``, ``provenance``: the file kinds and their labels,
  atomic writes, the options objects, and what every file records about its origin
- ``cli``              the pure commands (show, plot, fit, compare, predict, score,
                       loao, report), mounted by ``runner.cli``
"""

from .errors import PhantomError
from .jumps import JumpOptions, find_jumps
from .outcomes import OutcomeOptions, classify
from .trajectory import annotate, open_run

__all__ = ["JumpOptions", "OutcomeOptions", "PhantomError", "annotate", "classify",
           "find_jumps", "open_run"]
