"""Offline image modules: the build recipes of hub_modules.yaml whose source is `tflite` or `keras`.

`tflite`: a quantized MobileNet (files under <data_dir>) rebuilt as a float Keras network
(image_convert.py); its ImageNet head is kept beside the SavedModel as imagenet_head.npz so the
conversion can be checked against the TF-Lite interpreter (scripts/image_module_agreement.py).
`keras`: a saved Keras model that already ends in a feature vector (SqueezeNet v1.1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automl_transfer.errors import ModuleError
from automl_transfer.modules import image_convert, registry
from automl_transfer.modules.image_module import export_image_module

SOURCES = ("tflite", "keras")
HEAD_FILE = "imagenet_head.npz"


def backbone(recipe: dict[str, Any], data_dir: Path) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """(float Keras backbone, ImageNet head kernel or None, head bias or None) of a recipe."""
    files = [data_dir / f for f in recipe["files"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModuleError(f"{', '.join(missing)}: pre-trained weights not found (set --data_dir)")
    if recipe["source"] == "tflite":
        return image_convert.mobilenet_from_tflite(recipe["arch"], float(recipe["alpha"]),
                                                   int(recipe["input_size"]), files)
    return image_convert.keras_backbone(files[0]), None, None


def export(staging: Path, spec: registry.ModuleSpec, recipe: dict[str, Any], data_dir: Path
           ) -> dict[str, Any]:
    """Write an image module into `staging`; its manifest fields."""
    model, head_kernel, head_bias = backbone(recipe, data_dir)
    dim = int(model.outputs[0].shape[-1])
    if dim != spec.dim:
        raise ModuleError(f"module {spec.name!r}: network gives {dim} features, hub_modules.yaml says {spec.dim}")
    size = int(recipe["input_size"])
    export_image_module(str(staging), model, size, recipe["preprocessing"])
    if head_kernel is not None:
        np.savez(staging / HEAD_FILE, kernel=head_kernel, bias=head_bias)
    return {"source": recipe["source"], "files": list(recipe["files"]), "modality": "image",
            "input_size": size, "dim": dim, "preprocessing": recipe["preprocessing"],
            "parameters": int(sum(np.prod(w.shape) for w in model.weights))}
