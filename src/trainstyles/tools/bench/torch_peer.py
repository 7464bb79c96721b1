"""The PyTorch peer: the styles' MLP, data, batch size, optimizer and loss in a plain PyTorch
eager loop, as a PyTorch user would write it. It runs in a venv of its own (.venv-torch,
requirements-torch.txt), as a script that needs only numpy and torch:

    .venv-torch/bin/python torch_peer.py '{"split": "data/split", "epochs": 3, ...}'

prints one line of JSON: each timed epoch's seconds, the ops one more epoch dispatched, and the
torch version."""

import contextlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpDispatches(TorchDispatchMode):
    """Every op PyTorch's dispatcher runs, backward and optimizer included: in eager mode each
    is a trip from the host (on a GPU, a kernel launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def loaded(directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A part of data/split as the styles read it: flat float32 pixels in [0, 1], labels."""
    images = np.load(directory / "images.npy")
    pixels = images.reshape(len(images), -1).astype("float32") / 255.0
    labels = np.load(directory / "labels.npy").astype(np.int64)
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def timed_epochs(config: dict) -> dict:
    """A warm-up epoch, `epochs` timed ones, one counted, and the start of one more closes it:
    shuffle, forward, loss, backward, Adam's step, then a validation pass."""
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["threads"])
    layers, sizes = [], config["sizes"]
    for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    # Keras' epsilon, so that the optimizer is the styles' Adam; PyTorch's default is 1e-8.
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    split = Path(config["split"])
    (x, y), (val_x, val_y) = loaded(split / "train"), loaded(split / "val")
    batch_size, epochs, starts, counter = config["batch_size"], config["epochs"], [], OpDispatches()
    for number in range(epochs + 3):
        starts.append(time.perf_counter())
        if number == epochs + 2:
            break
        with counter if number == epochs + 1 else contextlib.nullcontext():
            model.train()
            for index in torch.randperm(len(x)).split(batch_size):
                loss = loss_fn(model(x[index]), y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                batches = zip(val_x.split(batch_size), val_y.split(batch_size), strict=True)
                correct = sum((model(bx).argmax(1) == by).sum().item() for bx, by in batches)
    return {
        "epochs": list(np.diff(starts[1 : epochs + 2])),
        "dispatches_per_epoch": counter.count,
        "val_accuracy": correct / len(val_y),
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    print(json.dumps(timed_epochs(json.loads(sys.argv[1]))))
