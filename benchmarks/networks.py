"""The notes' two convnets as fastconv and PyTorch models, and one training step of each.

Same architecture, same batch, RMSprop (lr 1e-3, rho 0.9, epsilon 1e-7) in both;
PyTorch uses its default NCHW layout and its CPU build's threads.
"""

import numpy as np

import fastconv
from fastconv.examples.listings import cats_dogs_convnet, mnist_convnet

try:
    import torch
except ImportError:  # the optional [bench] extra
    torch = None

# Forward FLOPs per sample (multiply-adds x 2), as the brief counts them; a training step is ~3x.
MNIST_FORWARD_FLOPS = 5.59e6
CATS_DOGS_FORWARD_FLOPS = 0.472e9


def mnist_fastconv():
    return mnist_convnet(), (28, 28, 1), "categorical_crossentropy", 10


def cats_dogs_fastconv():
    return cats_dogs_convnet(), (150, 150, 3), "binary_crossentropy", 1


def _torch_convnet(channels, convs, dense_in, dense_hidden, outputs):
    nn = torch.nn
    blocks, previous = [], channels
    for index, filters in enumerate(convs):
        blocks += [nn.Conv2d(previous, filters, 3), nn.ReLU()]
        if index < len(convs) - 1 or outputs == 1:
            blocks.append(nn.MaxPool2d(2))
        previous = filters
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(dense_in, dense_hidden), nn.ReLU(), nn.Linear(dense_hidden, outputs))


def mnist_torch():
    return _torch_convnet(1, [32, 64, 64], 576, 64, 10)


def cats_dogs_torch():
    return _torch_convnet(3, [32, 64, 128, 128], 6272, 512, 1)


def make_training_step(network, implementation, batch_size, seed=0):
    """A zero-argument function running one optimizer step of ``network`` ('mnist' or 'cats_dogs')."""
    rng = np.random.default_rng(seed)
    if implementation == "torch":
        model = mnist_torch() if network == "mnist" else cats_dogs_torch()
        shape = (batch_size, 1, 28, 28) if network == "mnist" else (batch_size, 3, 150, 150)
        x = torch.from_numpy(rng.random(shape, dtype=np.float32))
        if network == "mnist":
            y = torch.from_numpy(rng.integers(0, 10, batch_size))
            loss_fn = torch.nn.CrossEntropyLoss()
        else:
            y = torch.from_numpy(rng.integers(0, 2, (batch_size, 1)).astype(np.float32))
            loss_fn = torch.nn.BCEWithLogitsLoss()
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)

        def torch_step():
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()

        return torch_step

    with fastconv.use_backend(implementation):
        model, input_shape, loss, outputs = mnist_fastconv() if network == "mnist" else cats_dogs_fastconv()
    model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"])
    x = rng.random((batch_size, *input_shape), dtype=np.float32)
    labels = rng.integers(0, outputs if outputs > 1 else 2, batch_size)
    y = np.eye(outputs, dtype=np.float32)[labels] if outputs > 1 else labels.astype(np.float32)

    def fastconv_step():
        with fastconv.use_backend(implementation):
            model.train_on_batch(x, y)

    return fastconv_step
