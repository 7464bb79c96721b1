"""tf.distribute: the strategy params name, and which worker's files are the stage's outputs."""

import tensorflow as tf

from trainstyles.pipeline.params import DistributeParams


def distribution(params: DistributeParams) -> tf.distribute.Strategy:
    """The strategy to train under. `none` is TensorFlow's default strategy, which distributes
    nothing: a single-device run computes, bit for bit, what it did before strategies."""
    if params.strategy == "multi_worker":
        # The cluster and this worker's place in it come from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if params.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(mirrored_devices(params.logical_cpus))
    return tf.distribute.get_strategy()


def mirrored_devices(logical_cpus: int | None) -> list[str] | None:
    """All local GPUs (None: MirroredStrategy's own default); on a machine without one, the CPU
    split into `logical_cpus` devices, which lets replication be tested anywhere."""
    if tf.config.list_physical_devices("GPU") or not logical_cpus:
        return None
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [cpu]) != logical_cpus:
        # Possible only before TensorFlow sets up its devices: a stage gets here first thing.
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def is_chief(params: DistributeParams) -> bool:
    """Whether this process's files are the stage's outputs: always, except under multi_worker,
    where only the chief's are (TF_CONFIG's `chief`, or else worker 0, as TensorFlow has it)."""
    if params.strategy != "multi_worker":
        return True
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if cluster.task_type in (None, "chief"):
        return True
    return (
        cluster.task_type == "worker"
        and cluster.task_id == 0
        and "chief" not in cluster.cluster_spec().jobs
    )
