"""Reusable code for the executable book *Loss Functions in PyTorch, Verified*.

One concept per module:

* :mod:`helpers.runtime` -- quick mode, synthetic-data permission, device choice, seeding.
* :mod:`helpers.versions` -- the running torch's release, and the guard for sections that need a newer one.
* :mod:`helpers.glue` -- glue computed values into the prose (myst-nb when installed, a display otherwise).
* :mod:`helpers.stats` -- paired t-intervals and the verdict words computed from them.
* :mod:`helpers.datasets` -- the data root, MNIST and CIFAR-10/100 as in-memory tensors, damaged-file errors,
  and the loudly-labelled synthetic CIFAR stand-ins.
* :mod:`helpers.validation` -- argument checks shared by the losses (clear ``ValueError``/``TypeError``).
* :mod:`helpers.models` -- small networks used by the chapters (``MnistNet``, ``SmallCNN``, the cosine head).
* :mod:`helpers.reference` -- from-scratch versions of every ``torch.nn`` loss and the atlas that checks them
  (chapter 1).
* :mod:`helpers.onehot_losses` -- squared error against one-hot targets, weighted per class (chapter 1).
* :mod:`helpers.autograd_losses` -- hand-written backward passes and the gradient-check harness (chapter 2).
* :mod:`helpers.weighted_ce` -- weighted cross-entropy taken apart element by element, effective weights
  per sample (chapter 3).
* :mod:`helpers.imbalance` -- long-tailed subsampling and the balanced validation split (chapter 4).
* :mod:`helpers.losses` -- focal, LDAM, logit-adjusted and balanced-softmax losses, class weights, DRW.
* :mod:`helpers.class_balanced` -- Cui et al.'s sigmoid CB focal loss and Cao et al.'s CB resampling.
* :mod:`helpers.decoupling` -- cRT and tau-normalisation on a trained cross-entropy model (Kang et al.).
* :mod:`helpers.metrics` -- accuracy, balanced accuracy, many/medium/few recalls, macro-F1, confusion, ECE.
* :mod:`helpers.train` -- the in-memory trainer and its throughput comparison.
* :mod:`helpers.longtail_types` -- the types a long-tailed experiment passes around (dataset spec, run record).
* :mod:`helpers.results_store` -- a results file that records each run atomically and resumes.
* :mod:`helpers.longtail_methods` -- the registry of long-tail methods (loss, sampling, head, post-hoc step).
* :mod:`helpers.longtail_data` -- the MNIST-LT recipes and spec, the dataset registry, user tensors made long-tailed.
* :mod:`helpers.longtail_runner` -- ``run_experiment``: every method on every seed pair, one row per run.
* :mod:`helpers.longtail_tables` -- paired differences against a baseline, the possibly-best set, summaries.
* :mod:`helpers.longtail_plots` -- per-class recall, confusion, curves, reliability and paired-difference figures.
* :mod:`helpers.experiments` -- the command line ``python -m helpers.experiments`` (results files, resume).
* :mod:`helpers.cifar` -- CIFAR-10/100-LT: ResNet-32, FastNet, batch augmentation, protocols, published numbers
  (chapter 5).
* :mod:`helpers.reproduction` -- the CIFAR-LT reproduction pipeline's job matrix, merged results file and its
  table beside the published rows (chapter 5).
* :mod:`helpers.custom_losses` -- custom loss modules that behave like ``torch.nn``'s (chapter 6).
* :mod:`helpers.fast_focal` -- a softmax focal loss with a hand-written backward (chapter 6).
* :mod:`helpers.loss_benchmark` -- forward+backward time and memory of losses against cross-entropy (chapter 6).
* :mod:`helpers.tuning` -- search strategies through Optuna (grid, random, TPE; storage and resume), seed sweeps,
  selection bias, penalties (chapter 7).
* :mod:`helpers.run_cache` -- the cache of training runs for knob sweeps (shared settings, paired seeds)
  (chapter 7).
* :mod:`helpers.accumulation` -- a step's mean cross-entropy over micro-batches and data-parallel workers
  (chapter 8).
* :mod:`helpers.data_parallel` -- real data-parallel steps on the CPU (gloo worker processes): accumulation with
  ``no_sync`` and InfoNCE with gathered negatives (chapter 8).
* :mod:`helpers.exercises` -- checkers for the exercises at the end of each chapter (one per exercise,
  with a hint naming the likely mistake).

Notebooks import the modules they need explicitly (``from helpers.datasets import load_mnist``);
nothing is re-exported here so that importing :mod:`helpers` stays cheap.
"""

import sys

if sys.version_info < (3, 10):  # noqa: UP036 - the early, clear error is the point
    raise ImportError(
        f"The lossbook helpers need Python 3.10 or newer; this is Python {sys.version.split()[0]} "
        f"({sys.executable}). On macOS the system python3 is 3.9: install a newer Python (python.org, "
        "Homebrew or pyenv), create the virtual environment with it, and reinstall (see README.md)."
    )

__version__ = "0.1.0"
