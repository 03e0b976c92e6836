"""The VGG16 convolutional base as a PyTorch module holding a fastconv model's weights.

An independent computation of the same function, for the tests that check fastconv's
features and for the benchmarks that time both in one run. Needs torch (the [bench] extra).
"""

import numpy as np


def vgg16_base_in_torch(model):
    """``torch.nn.Sequential`` (NCHW) equal to ``model``'s convolutions and pools, with its weights copied.

    model: a fastconv ``VGG16(include_top=False)``; every Conv2D is 3x3, stride 1, 'same', ReLU, and every
    pool 2x2 stride 2 'valid' (torch's floor mode drops the last row and column just as Keras does).
    """
    import torch
    from fastconv.layers import Conv2D, MaxPooling2D

    modules = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            kernel_hwio, bias = layer.get_weights()
            conv = torch.nn.Conv2d(kernel_hwio.shape[2], kernel_hwio.shape[3], kernel_hwio.shape[:2], padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(bias))
            modules += [conv, torch.nn.ReLU(inplace=True)]
        elif isinstance(layer, MaxPooling2D):
            modules.append(torch.nn.MaxPool2d(2, 2))
    return torch.nn.Sequential(*modules).eval()


def torch_features(torch_base, x_nhwc):
    """Run ``torch_base`` on NHWC float32 images; returns NHWC features as a NumPy array."""
    import torch

    with torch.no_grad():
        x_nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
        return torch_base(x_nchw).numpy().transpose(0, 2, 3, 1)
