"""Proximal Adagrad for plain tf.Variables, as TF1's ProximalAdagradOptimizer (no Keras built-in).

Per coordinate, with accumulator `a` (initialised to 0.1) and gradient `g`:
    a += g^2;  r = lr / sqrt(a);  v = w - r * g;  w = sign(v) / (1 + r * l2) * max(|v| - r * l1, 0)
(the proximal terms use the adaptive rate r, as TF's kernel does). The L1 term gives exact zeros (the sparse wide tower of the paper). The update runs in TF's fused
kernels (ResourceApplyProximalAdagrad / ResourceSparseApplyProximalAdagrad).

Sparse (tf.IndexedSlices) gradients touch only the rows they name ("lazy" regularisation: other
rows are not shrunk). Repeated indices are summed first, so a sparse update of a row equals the
dense update with the summed gradient of that row.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import tensorflow as tf

INITIAL_ACCUMULATOR = 0.1


class ProximalAdagrad:
    """One learning rate and one pair of proximal terms for a fixed list of variables."""

    def __init__(self, variables: Sequence[tf.Variable], learning_rate: float, l1: float = 0.0,
                 l2: float = 0.0, initial_accumulator_value: float = INITIAL_ACCUMULATOR):
        self.variables = list(variables)
        self.learning_rate = float(learning_rate)
        self.l1 = float(l1)
        self.l2 = float(l2)
        # Accumulators are created here, eagerly, so `apply_gradients` can run in any tf.function.
        self.accumulators = {
            v.ref(): tf.Variable(tf.fill(tf.shape(v), tf.constant(initial_accumulator_value, v.dtype)),
                                 trainable=False, name="accumulator")
            for v in self.variables}

    def apply_gradients(self, grads_and_vars: Iterable[tuple[tf.Tensor | tf.IndexedSlices, tf.Variable]]
                        ) -> None:
        """One step for each (gradient, variable); a None gradient leaves its variable alone."""
        for grad, var in grads_and_vars:
            if grad is None:
                continue
            accum = self.accumulators[var.ref()]
            lr = tf.constant(self.learning_rate, var.dtype)
            l1 = tf.constant(self.l1, var.dtype)
            l2 = tf.constant(self.l2, var.dtype)
            if isinstance(grad, tf.IndexedSlices):
                indices, position = tf.unique(grad.indices)
                values = tf.math.unsorted_segment_sum(grad.values, position, tf.size(indices))
                tf.raw_ops.ResourceSparseApplyProximalAdagrad(
                    var=var.handle, accum=accum.handle, lr=lr, l1=l1, l2=l2, grad=values,
                    indices=indices)
            else:
                tf.raw_ops.ResourceApplyProximalAdagrad(
                    var=var.handle, accum=accum.handle, lr=lr, l1=l1, l2=l2, grad=grad)
