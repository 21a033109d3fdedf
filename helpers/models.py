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


class MnistNet(nn.Module):
    """A fast CNN for 28x28 single-channel images (MNIST): strided convolutions, no pooling.

    ``conv5x5(c1, stride 2) -> ReLU -> conv3x3(c2, stride 2) -> ReLU -> flatten (c2 * 7 * 7) ->
    linear(hidden) -> ReLU -> linear(num_classes)``. Striding instead of pooling keeps the
    multiply-adds per image low (about 0.4 M with the defaults), so it trains at thousands of
    images per second on a laptop CPU and still reaches over 98.5% test accuracy on MNIST in a
    few epochs.

    Args:
        in_channels: input channels (1 for MNIST).
        num_classes: width of the output logits.
        widths: channels of the two convolutions.
        hidden: width of the hidden fully connected layer (0: none, flatten straight to the logits).
        image_size: input height and width (28 for MNIST); must be divisible by 4.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int] = (16, 32),
        hidden: int = 64,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        c1, c2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        flat = c2 * (image_size // 4) ** 2
        head: list[nn.Module] = [nn.Linear(flat, hidden), nn.ReLU(inplace=True)] if hidden else []
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(hidden or flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        return self.classifier(self.head(self.features(x)))


class NormedLinear(nn.Module):
    """A cosine classifier: logits :math:`z_c = \\frac{w_c^\\top x}{\\lVert w_c \\rVert \\, \\lVert x \\rVert}`.

    The last layer LDAM uses (Cao et al. 2019): logits lie in [-1, 1] and the loss multiplies
    them by its scale ``s``. Input ``(N, in_features)``, output ``(N, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=1) @ nn.functional.normalize(self.weight, dim=0)


def use_normed_head(model: nn.Module) -> nn.Module:
    """Replace the model's last :class:`nn.Linear` by a :class:`NormedLinear` of the same shape, in place.

    Returns the model. Raises ``ValueError`` if it has no ``nn.Linear``.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError("use_normed_head needs a model whose last layer is an nn.Linear; none found")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    new = NormedLinear(old.in_features, old.out_features).to(device=old.weight.device, dtype=old.weight.dtype)
    setattr(parent, child, new)
    return model
