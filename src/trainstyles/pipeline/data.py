"""Fashion-MNIST: find the four IDX files, verify and decode them, split, and batch for training.

The pinned SHA-256 values are those of the *decompressed* IDX files. The published `.gz`
archives and Debian's `dataset-fashion-mnist` hold the same IDX bytes, but Debian recompressed
them, so archive hashes would tell two good copies apart while content hashes accept both
and still catch any altered, truncated or substituted file.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainstyles import StageError

IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SIZE = 28 * 28
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One part of the data set: uint8 images (n, 28, 28) and their labels (n,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int | None) -> "Split":
        return self if count is None else Split(self.images[:count], self.labels[:count])


def keras_cache_dir() -> Path:
    """Where `keras.datasets.fashion_mnist` keeps these same files."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "datasets" / "fashion-mnist"


def find_source() -> Path:
    """The directory holding the four archives, by DESIGN.md's order; downloads as a last resort."""
    if "FASHION_MNIST_DIR" in os.environ:
        return Path(os.environ["FASHION_MNIST_DIR"])  # named explicitly: used even if incomplete
    for candidate in (DEBIAN_DIR, keras_cache_dir()):
        if all((candidate / name).is_file() for name in IDX_SHA256):
            return candidate
    return download(keras_cache_dir())


def download(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in IDX_SHA256:
        if (directory / name).is_file():
            continue
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".{name}.", delete=False) as part:
            try:
                with urllib.request.urlopen(DOWNLOAD_URL + name, timeout=60) as response:
                    shutil.copyfileobj(response, part)
            except OSError as error:
                Path(part.name).unlink()
                raise StageError(
                    f"{name}: not found locally and the download from {DOWNLOAD_URL} failed "
                    f"({error}); set FASHION_MNIST_DIR or install dataset-fashion-mnist"
                ) from None
        os.replace(part.name, directory / name)
    return directory


def read_verified(path: Path) -> bytes:
    """The decompressed IDX bytes of `path`, refused unless their SHA-256 is the pinned one.

    A damaged archive is hashed as far as it decompresses, so `actual` describes the file
    rather than an empty read.
    """
    expected = IDX_SHA256[path.name]
    if not path.is_file():
        raise StageError(f"{path.name}: missing at {path} (expected SHA-256 {expected})")
    chunks, damage = [], ""
    try:
        with gzip.open(path) as stream:
            while chunk := stream.read(1 << 20):
                chunks.append(chunk)
    except EOFError:
        damage = "gzip stream is truncated"
    except (OSError, gzip.BadGzipFile) as error:
        damage = f"{path.name} is not a readable gzip file: {error}"
    content = b"".join(chunks)
    actual = hashlib.sha256(content).hexdigest()
    if damage:
        damage = f" of the {len(content)} bytes that decompress ({damage})"
    if actual != expected:
        raise StageError(
            f"{path.name}: SHA-256 mismatch in {path}: expected {expected}, actual {actual}{damage}"
        )
    return content


def decode_idx(content: bytes, name: str) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0801 labels, 0x0803 images) as a numpy array."""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08" or content[3] not in (1, 3):
        raise StageError(f"{name}: not an IDX file of unsigned bytes with 1 or 3 dimensions")
    ndim = content[3]
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    if len(content) != header + int(np.prod(shape)):
        raise StageError(f"{name}: IDX header says {shape}, but the data has another size")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def load_raw(source: Path) -> dict[str, Split]:
    """The train and test sets from `source`, after verifying all four files."""
    arrays = {name: decode_idx(read_verified(source / name), name) for name in IDX_SHA256}
    return {
        part: checked_split(images, arrays[images], labels, arrays[labels])
        for part, images, labels in (
            ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            ("test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        )
    }


def checked_split(
    images_name: str, images: np.ndarray, labels_name: str, labels: np.ndarray
) -> Split:
    """Images and labels that fit together. The pinned hashes already exclude anything else;
    these checks name the problem when the pins are changed for another copy of the data."""
    if images.shape[1:] != (28, 28):
        raise StageError(f"{images_name}: images are {images.shape[1:]}, expected (n, 28, 28)")
    if labels.ndim != 1:
        raise StageError(f"{labels_name}: labels have shape {labels.shape}, expected (n,)")
    if len(images) != len(labels):
        raise StageError(
            f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels"
        )
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise StageError(f"{labels_name}: label {labels.max()} outside 0-{len(CLASS_NAMES) - 1}")
    return Split(images, labels)


def split_train(train: Split, val_size: int) -> tuple[Split, Split]:
    """The tutorial's split: the last `val_size` training images validate, the rest train."""
    if val_size >= len(train):
        raise StageError(
            f"split.val_size = {val_size}: must be smaller than the {len(train)} training images"
        )
    cut = len(train) - val_size
    return Split(train.images[:cut], train.labels[:cut]), Split(
        train.images[cut:], train.labels[cut:]
    )


def save_split(split: Split, directory: Path) -> None:
    """Into a directory being built by outputs.atomic_dir: whole files are its job."""
    directory.mkdir(parents=True)
    np.save(directory / "images.npy", split.images)
    np.save(directory / "labels.npy", split.labels)


def load_split(directory: Path) -> Split:
    return Split(np.load(directory / "images.npy"), np.load(directory / "labels.npy"))


def features(split: Split) -> np.ndarray:
    """Pixels as the MLP wants them: flat float32 in [0, 1]."""
    return split.images.reshape(-1, IMAGE_SIZE).astype("float32") / 255.0


def batches(split: Split, batch_size: int):
    """A `tf.data` pipeline of (pixels, label) batches in the split's own order."""
    import tensorflow as tf  # noqa: PLC0415 - prepare and split must not pay for TensorFlow

    dataset = tf.data.Dataset.from_tensor_slices((features(split), split.labels.astype("int32")))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class EpochBatches:
    """Training batches whose order in epoch e is a pure function of (seed, e).

    tf.data's `shuffle(reshuffle_each_iteration=True)` draws a new order per *iterator*, and
    fit() makes one more iterator than a raw loop (to build the model), so with one seed the
    styles saw different batches from epoch 2 on. Here each epoch's order is a stateless
    shuffle keyed by (seed, epoch), read when the epoch's iterator starts: however often and
    by whom the data is iterated, epoch e sees the same batches in the same order.
    """

    def __init__(self, split: Split, batch_size: int, seed: int):
        import tensorflow as tf  # noqa: PLC0415

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        pixels, labels = tf.constant(features(split)), tf.constant(split.labels.astype("int32"))
        self.steps = -(-len(split) // batch_size)

        def epoch_batches(_):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(len(split)), seed=tf.stack([tf.constant(seed, tf.int64), self.epoch])
            )
            # Slices of the order, not unbatch().batch(): one element per batch, not per image.
            starts = tf.range(0, len(split), batch_size)
            return tf.data.Dataset.from_tensor_slices(starts).map(
                lambda start: order[start : start + batch_size]
            )

        self.dataset = (
            tf.data.Dataset.range(1)
            .flat_map(epoch_batches)
            .map(lambda index: (tf.gather(pixels, index), tf.gather(labels, index)))
            .apply(tf.data.experimental.assert_cardinality(self.steps))
            .prefetch(tf.data.AUTOTUNE)
        )

    def start_epoch(self, epoch: int) -> None:
        """Select the order of `epoch` (counted from 0) for the next pass over the data."""
        self.epoch.assign(epoch)
