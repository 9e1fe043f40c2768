"""Controller settings presets; kept free of TensorFlow so the CLI can describe them instantly."""
from __future__ import annotations

import math

from automl_transfer.errors import UserError

# "default" is what we measured to learn within a few hundred trials (docs/method.md);
# "paper" is the paper's learning rate, which needs thousands of trials.
PRESETS: dict[str, dict[str, float]] = {
    "default": {"learning_rate": 2e-3, "entropy_weight": 1e-3},
    "paper": {"learning_rate": 1e-4, "entropy_weight": 1e-3},
}


def resolve_settings(preset: str, learning_rate: float | None, entropy_weight: float | None
                     ) -> tuple[float, float]:
    """The preset's values, each overridden where given explicitly."""
    if preset not in PRESETS:
        raise UserError(f"unknown controller preset '{preset}': choose one of {sorted(PRESETS)}")
    values = PRESETS[preset]
    lr = values["learning_rate"] if learning_rate is None else float(learning_rate)
    entropy = values["entropy_weight"] if entropy_weight is None else float(entropy_weight)
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"--learning_rate={lr}: the controller learning rate must be a finite "
                        f"number > 0")
    if not (math.isfinite(entropy) and entropy >= 0):
        raise UserError(f"--entropy_weight={entropy}: the controller entropy weight must be a "
                        f"finite number >= 0")
    return lr, entropy
