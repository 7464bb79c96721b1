import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, learnable_split
from trainstyles import StageError
from trainstyles.pipeline import data
from trainstyles.pipeline.data import (
    Split,
    decode_idx,
    features,
    find_source,
    load_raw,
    read_verified,
    split_train,
)


def test_decodes_verified_idx_files(fake_fashion_dir):
    raw = load_raw(fake_fashion_dir)
    expected = learnable_split(300, seed=1)
    np.testing.assert_array_equal(raw["train"].images, expected.images)
    np.testing.assert_array_equal(raw["train"].labels, expected.labels)
    assert raw["test"].images.shape == (60, 28, 28) and raw["test"].images.dtype == np.uint8


def test_altered_file_is_refused_naming_file_and_both_hashes(fake_fashion_dir):
    path = fake_fashion_dir / "train-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[-1] ^= 1
    path.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(StageError) as refused:
        read_verified(path)
    message = str(refused.value)
    assert message.startswith("train-labels-idx1-ubyte.gz: SHA-256 mismatch")
    assert f"expected {data.IDX_SHA256[path.name]}, actual " in message
    assert "\n" not in message


def test_truncated_archive_is_refused(fake_fashion_dir):
    path = fake_fashion_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(
        StageError, match=r"train-images-idx3-ubyte.gz: SHA-256 mismatch .* truncated"
    ):
        read_verified(path)


def test_missing_file_is_refused(fake_fashion_dir):
    (fake_fashion_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(
        StageError, match=r"t10k-images-idx3-ubyte.gz: missing at .* \(expected SHA-256 "
    ):
        load_raw(fake_fashion_dir)


def test_idx_header_must_match_the_data():
    with pytest.raises(StageError, match="IDX header says"):
        decode_idx(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "labels")
    with pytest.raises(StageError, match="not an IDX file"):
        decode_idx(b"PK\x03\x04", "labels")


def test_source_order_env_then_debian_then_keras_cache(fake_fashion_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "named"))
    assert find_source() == tmp_path / "named"
    monkeypatch.delenv("FASHION_MNIST_DIR")
    monkeypatch.setattr(data, "DEBIAN_DIR", fake_fashion_dir)
    assert find_source() == fake_fashion_dir
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for archive in fake_fashion_dir.iterdir():
        (cache / archive.name).write_bytes(archive.read_bytes())
    assert find_source() == cache


def test_validation_is_the_last_val_size_training_images():
    full = learnable_split(100, seed=3)
    train, val = split_train(full, val_size=20)
    assert (len(train), len(val)) == (80, 20)
    np.testing.assert_array_equal(val.images, full.images[80:])
    np.testing.assert_array_equal(train.labels, full.labels[:80])
    with pytest.raises(StageError, match=r"split\.val_size = 100: must be smaller than the 100"):
        split_train(full, val_size=100)


def test_features_are_flat_floats_in_unit_range():
    pixels = features(Split(np.full((2, 28, 28), 255, np.uint8), np.zeros(2, np.uint8)))
    assert pixels.shape == (2, 784) and pixels.dtype == np.float32 and pixels.max() == 1.0


@pytest.mark.skipif(not data.DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_files_match_the_pins():
    raw = load_raw(data.DEBIAN_DIR)
    assert raw["train"].images.shape == (60000, 28, 28) and raw["test"].images.shape == (
        10000,
        28,
        28,
    )
    assert sorted(np.unique(raw["train"].labels)) == list(range(10))


def test_prepare_stage_refuses_a_corrupted_mirror_and_writes_nothing(fake_fashion_dir, tmp_path):
    archive = fake_fashion_dir / "train-images-idx3-ubyte.gz"
    corrupted = b"\0\0\x08\x03 not the real images"
    archive.write_bytes(gzip.compress(corrupted))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "FASHION_MNIST_DIR": str(fake_fashion_dir)}
    result = subprocess.run(
        [sys.executable, REPO / "stages" / "prepare.py"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("prepare: error: train-images-idx3-ubyte.gz: SHA-256 mismatch")
    # The subprocess checks against the real pins, not the fixture's.
    real_pin = "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    assert f"expected {real_pin}, actual {hashlib.sha256(corrupted).hexdigest()}" in lines[0]
    assert list(work.iterdir()) == []
