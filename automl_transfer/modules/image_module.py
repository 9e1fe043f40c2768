"""Our image feature-vector SavedModel, in the TF-Hub image feature-vector format.

`hub.load(path)(images)`: float images [batch, size, size, 3] in [0, 1] -> features [batch, dim].
The module does its network's own preprocessing inside (slim MobileNets: (255 x - 128) / 128,
exactly the TF-Lite files' input quantisation; caffe style for SqueezeNet: BGR, 0..255, ImageNet
mean subtracted), so every caller feeds the same [0, 1] images.
`input_size` (a saved scalar) and manifest.json say which size to feed. Batch norm runs in
inference mode (these weights have it folded), so fine-tuning trains kernels and biases only.
"""
from __future__ import annotations

import tensorflow as tf

PREPROCESSING = ("slim", "caffe")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(images: tf.Tensor, kind: str) -> tf.Tensor:
    """[0, 1] RGB -> what the network was trained on."""
    if kind == "slim":
        return images * (255.0 / 128.0) - 1.0
    if kind == "caffe":
        return tf.reverse(images * 255.0, axis=[-1]) - tf.constant(_CAFFE_MEAN_BGR, tf.float32)
    raise ValueError(f"unknown preprocessing {kind!r}; known: {', '.join(PREPROCESSING)}")


class ImageFeatureModule(tf.train.Checkpoint):
    """A Keras backbone behind the TF-Hub image feature-vector interface."""

    def __init__(self, backbone, size: int, preprocessing: str):
        super().__init__()
        self.backbone = backbone
        self.preprocessing = preprocessing
        self.input_size = tf.Variable(size, trainable=False, name="input_size")
        self.variables = [w.value for w in backbone.weights]
        self.trainable_variables = [w.value for w in backbone.trainable_weights]
        self.regularization_losses = []
        self.__call__ = tf.function(self._features,
                                    input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])

    def _features(self, images: tf.Tensor) -> tf.Tensor:
        return self.backbone(preprocess(images, self.preprocessing), training=False)


def export_image_module(directory: str, backbone, size: int, preprocessing: str) -> str:
    """Write an ImageFeatureModule SavedModel to `directory` and return it."""
    module = ImageFeatureModule(backbone, size, preprocessing)
    tf.saved_model.save(module, directory, signatures={"default": module.__call__})
    return directory
