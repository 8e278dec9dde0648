"""Flow-JEPA: a bijective image encoder whose latent is semantically organised.

After "Flow JEPA: Experiments in Bijective Isometry" (A. Hibble).
"""

from flowjepa.config import FlowJEPAConfig
from flowjepa.errors import InvalidInputError, TrainingDivergedError
from flowjepa.model import FlowJEPA

__all__ = ["FlowJEPA", "FlowJEPAConfig", "InvalidInputError", "TrainingDivergedError", "optimize_input"]


def __getattr__(name: str):
    # optimize_input lives beside the planners; import it lazily to keep `import flowjepa` light.
    if name == "optimize_input":
        from flowjepa.optimize import optimize_input

        return optimize_input
    raise AttributeError(f"module 'flowjepa' has no attribute {name!r}")


__version__ = "0.1.0"
