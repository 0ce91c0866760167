"""Weight averaging on a one-weight model whose every step is known by hand."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from fashionrec.model.averaging import WeightAveraging


def _fit_descending_weight(steps: int, callbacks: list, built: bool = False) -> float:
    """A single weight w, starting at 0, with loss w and plain SGD at learning rate 1: each step takes 1 off
    it, so after step t it is -t. Returns w after ``fit``. ``built``: the weight exists before ``fit``
    (otherwise the first step creates it)."""
    inputs = [tf_keras.Input((1,))] if built else []
    model = tf_keras.Sequential([*inputs, tf_keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=tf_keras.optimizers.SGD(1.0), loss=lambda _, predicted: tf.reduce_mean(predicted))
    ones = np.ones((steps, 1), np.float32)
    model.fit(ones, np.zeros((steps, 1), np.float32), batch_size=1, epochs=1, verbose=0, callbacks=callbacks)
    return float(model.get_weights()[0][0, 0])


def test_without_averaging_the_last_step_is_kept():
    assert _fit_descending_weight(3, []) == pytest.approx(-3.0)


@pytest.mark.parametrize("built", [False, True])  # set up at the first step's end, or before the first step
def test_the_saved_weight_is_the_warmed_up_moving_average_of_each_step(built):
    # The average starts at the first step's weight, -1. Step t decays it by min(momentum, (1 + t) / (10 + t)):
    # step 2 by min(0.5, 3/12) = 1/4: -1/4 + 3/4 * -2 = -7/4; step 3 by min(0.5, 4/13) = 4/13:
    # 4/13 * -7/4 + 9/13 * -3 = -34/13.
    assert _fit_descending_weight(3, [WeightAveraging(0.5)], built) == pytest.approx(-34 / 13, rel=1e-6)


def test_a_long_training_decays_at_the_momentum():
    # From step 9 on, (1 + t) / (10 + t) >= 0.5, so the decay is the momentum: with w_t = -t the average
    # then trails the weight by momentum / (1 - momentum) = 1 step, plus a remainder that halves each step.
    averaged = _fit_descending_weight(40, [WeightAveraging(0.5)])
    assert averaged == pytest.approx(-39.0, abs=1e-6)


def test_momentum_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="momentum in \\(0, 1\\)"):
        WeightAveraging(1.0)
