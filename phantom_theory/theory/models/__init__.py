"""The theory models (THEORY.md section 8), one file each, and their registry.

Each theory is a ``Theory`` (``base``): it declares its target, its priors as
data (``priors``), its parameters' dims and its capabilities (levels, classes,
sampled or exact), and builds its PyMC model from the rows of the tidy table.
Fitting, comparison, prediction, simulation and the figures read only that
interface; no module outside this registry names a theory. To add one, write
its file here and register it below.
"""

from __future__ import annotations

from ...errors import PhantomError
from .base import FitData, Outcomes, Theory, fit_data
from .class_mixture import CLASSES, ClassMixture, ClassMixtureBinary
from .hier import Hierarchical
from .linear0 import Linear0
from .sharpness import Sharpness
from .universal import Universal

# M_class in two forms: the continuous LoRA cost (``class``, the primary one) and
# binary LoRA success (``class_binary``), the choice recorded as the theory's name.
THEORIES: dict[str, Theory] = {t.name: t for t in (Linear0(), Universal(), Hierarchical(),
                                                   ClassMixture(), ClassMixtureBinary(),
                                                   Sharpness())}
# What a comparison fits unless told otherwise: every registered theory, in the
# registry's order (a live view, so a theory registered later is included).
DEFAULT_THEORIES = THEORIES.keys()


def get_theory(theory: str | Theory) -> Theory:
    """The registered theory of that name (a Theory passes through)."""
    if isinstance(theory, Theory):
        return theory
    if theory not in THEORIES:
        raise PhantomError(f"unknown theory {theory!r}; the registered ones are "
                           f"{', '.join(THEORIES)}")
    return THEORIES[theory]


__all__ = ["CLASSES", "DEFAULT_THEORIES", "THEORIES", "ClassMixture", "ClassMixtureBinary",
           "FitData", "Hierarchical",
           "Linear0", "Outcomes", "Sharpness", "Theory", "Universal", "fit_data", "get_theory"]
