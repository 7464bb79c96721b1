"""The per-replica arithmetic of a step under tf.distribute, kept beside the styles, not in them.

Under a strategy each replica holds a slice of the global batch, and the optimizer sums the
replicas' gradients: a replica's loss must be its share of the global batch's mean. Under
TensorFlow's default strategy (distribute.strategy none) there is one replica, and a share is
the mean itself.
"""

import keras
import tensorflow as tf


def share_of_mean_loss(loss_fn: keras.losses.Loss, y, logits) -> tuple[tf.Tensor, tf.Tensor]:
    """This replica's share of the mean loss over the global batch, and that batch's size.

    `loss_fn` gives a loss per example. Counting the actual global batch, not the nominal one,
    keeps the short last batch a plain mean too, as in a single-device run.
    """
    global_batch_size = tf.distribute.get_replica_context().all_reduce("sum", tf.shape(y)[0])
    loss = tf.nn.compute_average_loss(loss_fn(y, logits), global_batch_size=global_batch_size)
    return loss, global_batch_size


def track_mean_loss(metric: keras.metrics.Mean, share: tf.Tensor, batch_size: tf.Tensor) -> None:
    """Adds a replica's loss share to a Mean as the whole mean, weighted by its batch: summed
    over replicas, a per-sample mean, as fit() reports it (Keras unscales the same way)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    metric.update_state(share * replicas, sample_weight=batch_size)


def summed_gradients(gradients: list) -> list:
    """The gradient the optimizer will apply: the sum of the replicas' shares (one replica
    alone: its own)."""
    return tf.distribute.get_replica_context().all_reduce("sum", gradients)
