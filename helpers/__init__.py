"""Reusable code for the executable book *Loss Functions in PyTorch, Verified*.

One concept per module:

* :mod:`helpers.runtime` -- quick mode, synthetic-data permission, device choice, seeding.
* :mod:`helpers.datasets` -- the data root, MNIST and CIFAR-10 as in-memory tensors, and the
  loudly-labelled synthetic CIFAR-10 stand-in.
* :mod:`helpers.models` -- small networks used by the chapters.

Notebooks import the modules they need explicitly (``from helpers.datasets import load_mnist``);
nothing is re-exported here so that importing :mod:`helpers` stays cheap.
"""

__version__ = "0.1.0"
