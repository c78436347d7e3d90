"""phantom-theory: the order parameter of near-synonym fine-tuning, its signal and
drag, outcomes, jumps and the phantom test; later the dimensionless quantities and
Bayesian theory models.

This package holds the pure computation. It never imports torch or the training
stack (``runner`` does the training).
"""

from .errors import PhantomError
from .jumps import JumpOptions, find_jumps
from .outcomes import OutcomeOptions, classify
from .trajectory import annotate, open_run

__all__ = ["JumpOptions", "OutcomeOptions", "PhantomError", "annotate", "classify",
           "find_jumps", "open_run"]
