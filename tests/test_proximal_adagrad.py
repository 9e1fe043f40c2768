"""Proximal Adagrad against its closed form, computed in numpy, over several steps."""
import numpy as np
import pytest
import tensorflow as tf

from automl_transfer.child.proximal_adagrad import INITIAL_ACCUMULATOR, ProximalAdagrad


def closed_form_step(w, accum, grad, lr, l1, l2):
    """TF1 ProximalAdagradOptimizer's update, in numpy: the proximal terms use the per-coordinate
    adaptive rate lr / sqrt(accum), as TF's kernel does."""
    accum = accum + grad**2
    rate = lr / np.sqrt(accum)
    prox = w - rate * grad
    w = np.sign(prox) / (1 + rate * l2) * np.maximum(np.abs(prox) - rate * l1, 0)
    return w, accum


def quadratic_grad(w, target):
    """Gradient of 0.5 * ||w - target||^2: a toy problem whose gradients depend on the weights."""
    return w - target


@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.05, 0.0), (0.0, 0.1), (0.02, 0.05)])
def test_dense_matches_closed_form(l1, l2):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 3)).astype(np.float32)
    target = rng.normal(scale=0.05, size=(4, 3)).astype(np.float32)
    var = tf.Variable(start)
    opt = ProximalAdagrad([var], learning_rate=0.3, l1=l1, l2=l2)
    w, accum = start.astype(np.float64), np.full((4, 3), INITIAL_ACCUMULATOR)
    for _ in range(6):
        grad = quadratic_grad(var.numpy(), target)
        opt.apply_gradients([(tf.constant(grad), var)])
        w, accum = closed_form_step(w, accum, grad.astype(np.float64), 0.3, l1, l2)
        np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.accumulators[var.ref()].numpy(), accum, rtol=1e-5)


def test_l1_produces_exact_zeros():
    var = tf.Variable(np.array([0.05, -0.02, 1.0, -2.0], np.float32))
    opt = ProximalAdagrad([var], learning_rate=0.5, l1=0.2)
    opt.apply_gradients([(tf.zeros(4), var)])
    result = var.numpy()
    shrink = 0.5 / np.sqrt(INITIAL_ACCUMULATOR) * 0.2  # rate * l1, with a zero gradient
    assert result[0] == 0.0 and result[1] == 0.0  # |w| <= rate * l1: clipped to exactly zero
    np.testing.assert_allclose(result[2:], [1.0 - shrink, -2.0 + shrink], rtol=1e-6)


def test_sparse_matches_closed_form_on_touched_rows_only():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(6, 2)).astype(np.float32)
    var = tf.Variable(start)
    opt = ProximalAdagrad([var], learning_rate=0.2, l1=0.01, l2=0.1)
    w, accum = start.astype(np.float64), np.full((6, 2), INITIAL_ACCUMULATOR)
    for step in range(5):
        rows = np.array([step % 6, (step + 2) % 6])
        values = rng.normal(size=(2, 2)).astype(np.float32)
        opt.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(rows), tf.constant([6, 2])), var)])
        new_w, new_accum = closed_form_step(w[rows], accum[rows], values.astype(np.float64), 0.2, 0.01, 0.1)
        w[rows], accum[rows] = new_w, new_accum
        np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)


def test_sparse_untouched_rows_are_not_shrunk():
    start = np.ones((5, 2), np.float32)
    var = tf.Variable(start)
    opt = ProximalAdagrad([var], learning_rate=0.5, l1=0.1, l2=0.1)
    opt.apply_gradients([(tf.IndexedSlices(tf.ones((1, 2)), tf.constant([3]), tf.constant([5, 2])), var)])
    result = var.numpy()
    np.testing.assert_array_equal(result[[0, 1, 2, 4]], start[[0, 1, 2, 4]])
    assert not np.allclose(result[3], start[3])


def test_repeated_sparse_indices_are_summed_like_a_dense_gradient():
    start = np.arange(8, dtype=np.float32).reshape(4, 2) / 10
    grads = np.array([[0.5, -1.0], [0.25, 0.5], [1.0, 1.0]], np.float32)
    rows = np.array([2, 0, 2])
    sparse_var, dense_var = tf.Variable(start), tf.Variable(start)
    sparse_opt = ProximalAdagrad([sparse_var], learning_rate=0.1, l1=0.01, l2=0.01)
    dense_opt = ProximalAdagrad([dense_var], learning_rate=0.1, l1=0.01, l2=0.01)
    sparse_opt.apply_gradients([(tf.IndexedSlices(tf.constant(grads), tf.constant(rows), tf.constant([4, 2])),
                                 sparse_var)])
    dense = np.zeros_like(start)
    np.add.at(dense, rows, grads)
    dense_opt.apply_gradients([(tf.constant(dense), dense_var)])
    touched = [0, 2]
    np.testing.assert_allclose(sparse_var.numpy()[touched], dense_var.numpy()[touched], rtol=1e-6)
    np.testing.assert_array_equal(sparse_var.numpy()[[1, 3]], start[[1, 3]])


def test_works_inside_tf_function_and_skips_none_gradients():
    var, other = tf.Variable([1.0, -1.0]), tf.Variable([5.0])
    opt = ProximalAdagrad([var, other], learning_rate=0.1)

    @tf.function
    def step():
        opt.apply_gradients([(tf.constant([1.0, 1.0]), var), (None, other)])

    step()
    w, _ = closed_form_step(np.array([1.0, -1.0]), np.full(2, INITIAL_ACCUMULATOR), np.ones(2), 0.1, 0, 0)
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)
    assert other.numpy()[0] == 5.0
