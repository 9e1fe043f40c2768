"""Rebuild the quantized TF-Lite MobileNets (and the Keras SqueezeNet) as float Keras networks.

A TF-Lite file can be neither fine-tuned nor served inside a SavedModel, so the float network is
rebuilt with keras.applications (weights=None) and the de-quantized weights loaded into it. The
files hold batch norm folded into each convolution (a kernel and a bias); Keras' MobileNets put a
bias-free convolution before a BatchNormalization, so that layer is set to the identity plus the
folded bias (gamma 1, mean 0, variance 1 - epsilon, beta = bias). Padding agrees: slim's 'SAME'
stride-2 convolutions on even sizes pad (0, 1), exactly Keras' explicit ZeroPadding2D. Layers are
matched by order: the convolutions of the file and of the Keras network run in the same order.

These files were trained quantization-aware: in training every activation went through an 8-bit
fake-quantisation with the ranges the file records. Without it the float network's features are
close (cosine > 0.98) but its top-1 class flips on low-margin photos; with the same fake
quantisation re-inserted after each convolution block, residual add and the pooling (see
`with_activation_quant`; its gradient is straight-through) the float network reproduces the
interpreter's classes. docs/modules.md gives both agreement figures.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from automl_transfer.errors import ModuleError

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
QUANT_OPS = CONV_OPS + ("ADD", "AVERAGE_POOL_2D")
IMAGENET_CLASSES = 1001  # index 0 is "background" in these files


@dataclasses.dataclass(frozen=True)
class FoldedConv:
    """One de-quantized convolution: a Keras-layout kernel and its folded bias."""

    op: str
    kernel: np.ndarray
    bias: np.ndarray
    out_range: tuple[float, float]  # the float range of the 8-bit output


@dataclasses.dataclass(frozen=True)
class TfliteNet:
    """What a converted network needs from a file: convolutions and the other ops' output ranges."""

    convs: list[FoldedConv]
    add_ranges: list[tuple[float, float]]
    pool_ranges: list[tuple[float, float]]


def _range(detail: dict) -> tuple[float, float]:
    scale, zero = detail["quantization"]
    return float((0 - zero) * scale), float((255 - zero) * scale)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """(q - zero_point) * scale, per tensor or per channel (along the quantized dimension)."""
    params = detail["quantization_parameters"]
    scales, zeros = params["scales"], params["zero_points"]
    if len(scales) <= 1:
        scale, zero = detail["quantization"]
        return (values.astype(np.float32) - zero) * np.float32(scale)
    shape = [1] * values.ndim
    shape[params["quantized_dimension"]] = -1
    return (values.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape).astype(np.float32)


def read_tflite(path: str | Path) -> TfliteNet:
    """Every convolution of a TF-Lite file, in execution order, de-quantized to Keras layout,
    and the output ranges of its residual adds and poolings."""
    import tensorflow as tf
    try:
        interpreter = tf.lite.Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModuleError(f"{path}: cannot read the TF-Lite file ({err})") from None
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    convs, adds, pools = [], [], []
    for op in interpreter._get_ops_details():  # the public API has no op list
        out_range = _range(details[op["outputs"][0]]) if op["op_name"] in QUANT_OPS else None
        if op["op_name"] == "ADD":
            adds.append(out_range)
        if op["op_name"] == "AVERAGE_POOL_2D":
            pools.append(out_range)
        if op["op_name"] not in CONV_OPS:
            continue
        _, weight_index, bias_index = op["inputs"][:3]
        weights = _dequantize(interpreter.get_tensor(weight_index), details[weight_index])
        bias = _dequantize(interpreter.get_tensor(bias_index), details[bias_index])
        if op["op_name"] == "CONV_2D":  # [out, h, w, in] -> [h, w, in, out]
            kernel = weights.transpose(1, 2, 3, 0)
        else:  # depthwise [1, h, w, channels] -> [h, w, channels, 1]
            kernel = weights[0][..., None]
        convs.append(FoldedConv(op["op_name"], kernel, bias, out_range))
    return TfliteNet(convs, adds, pools)


def load_folded(model, convs: list[FoldedConv]) -> None:
    """Load folded convolutions into a Keras MobileNet, in order; batch norms become bias-adds."""
    import keras
    layers = model.layers
    targets = [i for i, layer in enumerate(layers)
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    if len(targets) != len(convs):
        raise ModuleError(f"{model.name}: {len(targets)} convolutions in Keras, {len(convs)} in the file")
    for index, conv in zip(targets, convs):
        layer = layers[index]
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if depthwise != (conv.op == "DEPTHWISE_CONV_2D") or tuple(layer.kernel.shape) != conv.kernel.shape:
            raise ModuleError(f"{model.name}: layer {layer.name} {tuple(layer.kernel.shape)} does not "
                              f"match the file's {conv.op} {conv.kernel.shape}")
        layer.kernel.assign(conv.kernel)
        norm = layers[index + 1]
        if not isinstance(norm, keras.layers.BatchNormalization):
            raise ModuleError(f"{model.name}: {layer.name} is not followed by a batch norm")
        norm.gamma.assign(np.ones_like(conv.bias))
        norm.beta.assign(conv.bias)
        norm.moving_mean.assign(np.zeros_like(conv.bias))
        norm.moving_variance.assign(np.full_like(conv.bias, 1.0 - norm.epsilon))


def _quant_points(model, net: TfliteNet, convs: list[FoldedConv]) -> dict[str, tuple[float, float]]:
    """Layer name -> range of the fake quantisation after it: the end of each convolution block
    (its ReLU, else its batch norm), each residual add, the pooling."""
    import keras
    layers, points = model.layers, {}
    conv_layers = [i for i, layer in enumerate(layers)
                   if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    for index, conv in zip(conv_layers, convs):
        after = index + 2 if isinstance(layers[index + 2], keras.layers.ReLU) else index + 1
        points[layers[after].name] = conv.out_range
    for kind, ranges in ((keras.layers.Add, net.add_ranges),
                         (keras.layers.GlobalAveragePooling2D, net.pool_ranges)):
        found = [layer.name for layer in layers if isinstance(layer, kind)]
        points.update(zip(found, ranges[:len(found)]))
    return points


class ActivationQuant:
    """Factory of the fake-quantisation layer (keras imported lazily)."""

    @staticmethod
    def make(low: float, high: float, name: str):
        import keras
        import tensorflow as tf

        class _Quant(keras.layers.Layer):
            def call(self, x):
                return tf.quantization.fake_quant_with_min_max_args(x, min=low, max=high, num_bits=8)

        return _Quant(name=name)


def with_activation_quant(model, points: dict[str, tuple[float, float]]):
    """The same layers (shared weights), re-wired with a fake quantisation after each point."""
    import keras
    tensors = {id(model.inputs[0]): model.inputs[0]}
    for layer in model.layers[1:]:
        inputs = [tensors[id(t)] for t in layer._inbound_nodes[0].input_tensors]
        out = layer(inputs if len(inputs) > 1 else inputs[0])
        if layer.name in points:
            out = ActivationQuant.make(*points[layer.name], name=f"{layer.name}_quant")(out)
        tensors[id(layer.output)] = out
    return keras.Model(model.inputs[0], tensors[id(model.outputs[0])], name=f"{model.name}_quant")


def mobilenet_from_tflite(arch: str, alpha: float, size: int, files: list[Path],
                          quantize_activations: bool = True):
    """(float backbone ending in global average pooling, ImageNet head kernel, head bias).

    `files`: the classification file, or an embedding extractor followed by its head file.
    """
    import keras
    nets = [read_tflite(f) for f in files]
    net = TfliteNet([c for n in nets for c in n.convs], [r for n in nets for r in n.add_ranges],
                    [r for n in nets for r in n.pool_ranges])
    convs = list(net.convs)
    head = convs.pop()
    if head.kernel.shape[-1] != IMAGENET_CLASSES:
        raise ModuleError(f"{files[-1]}: last convolution has {head.kernel.shape[-1]} outputs, "
                          f"not the {IMAGENET_CLASSES} ImageNet classes")
    build = {"mobilenet_v1": keras.applications.MobileNet,
             "mobilenet_v2": keras.applications.MobileNetV2}[arch]
    model = build(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None,
                  pooling="avg")
    load_folded(model, convs)
    if quantize_activations:
        model = with_activation_quant(model, _quant_points(model, net, convs))
    return model, head.kernel.reshape(-1, IMAGENET_CLASSES), head.bias


def keras_backbone(path: Path):
    """A saved Keras model that already ends in a feature vector (SqueezeNet here)."""
    import keras
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as err:
        raise ModuleError(f"{path}: cannot load the Keras model ({err})") from None
