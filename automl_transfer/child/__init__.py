"""The child network: wide-and-deep text classifier, Proximal Adagrad, and `evaluate` (one trial)."""
from automl_transfer.child.evaluate import TaskRef, evaluate

__all__ = ["TaskRef", "evaluate"]
