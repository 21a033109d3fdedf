"""Small networks shared by the chapters."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A compact CNN for 28x28 (MNIST) or 32x32 (CIFAR-sized) images.

    ``conv(c1) -> ReLU -> maxpool -> conv(c2) -> ReLU -> maxpool -> global average pool ->
    linear(num_classes)``. Global pooling makes it input-size agnostic. With the default widths it
    has about 25k parameters (MNIST) and trains on a 2-core CPU at thousands of images per second.

    Args:
        in_channels: 1 for MNIST, 3 for RGB.
        num_classes: width of the output logits.
        widths: channels of the two convolution stages.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        c1, c2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        return self.classifier(self.features(x).mean(dim=(2, 3)))
