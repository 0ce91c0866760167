"""Weight averaging: the model saved is an exponential moving average of the weights after every training
step, not the last step's weights.

Why: the last steps' noise varies the trained model from seed to seed more than most settings do. On
MovieLens-1M's validation period the future-set model's NDCG@10 spread over three seeds 0.0117 with the
last step's weights and 0.0038 with their average (momentum 0.99; ``docs/quality.md``).

The average is TensorFlow's ``tf.train.ExponentialMovingAverage`` with its warm-up: the decay at step t
is ``min(momentum, (1 + t) / (10 + t))``, so a short training (a small shop, a test) is averaged over its
own steps instead of being pulled back towards its random initial weights.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class WeightAveraging(tf_keras.callbacks.Callback):
    """Keeps the moving average of the model's trainable weights through ``fit`` and writes it into them
    when ``fit`` ends, so whatever is saved afterwards holds the average."""

    def __init__(self, momentum: float) -> None:
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"weight averaging needs a momentum in (0, 1), got {momentum}")
        self.momentum = momentum
        self._average: tf.train.ExponentialMovingAverage | None = None
        self._variables: list[tf.Variable] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Create the averages and trace their updates before the first step, where the model's weights exist
        already (``TwoTowerModel.build_variables``): set up during a step, they would cost that step more than
        a step, and Keras would warn of a slow callback."""
        if self._weights_exist():
            self._set_up()
            self._restart()
            self._update()  # traced; with the averages equal to the weights it changes nothing

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._average is None:  # a model whose weights appeared in its first step
            self._set_up()
        if batch == 0 and int(self.model.optimizer.iterations) == 1:
            self._restart()  # the average starts at the first step's weights
        else:
            self._update()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._average is None:  # no step was taken
            return
        for variable in self._variables:
            variable.assign(self._average.average(variable))

    def _weights_exist(self) -> bool:
        try:
            return bool(self.model.trainable_variables)
        except ValueError:  # a Sequential model not built yet refuses to list its weights
            return False

    def _set_up(self) -> None:
        self._variables = list(self.model.trainable_variables)
        self._average = tf.train.ExponentialMovingAverage(self.momentum, num_updates=self.model.optimizer.iterations)
        self._average.apply(self._variables)  # creates the averages, at the weights' current values

    @tf.function
    def _restart(self) -> None:
        """The averages set to the weights."""
        for variable in self._variables:
            self._average.average(variable).assign(variable)

    @tf.function
    def _update(self) -> None:
        """One step's update as a graph: called eagerly, the averages of a model's few dozen variables cost
        more than a training step."""
        self._average.apply(self._variables)
