"""Settings for the whole test run; the notebooks' kernels (nbval) inherit this environment."""

import os
import sys

# Under xdist, each worker and the notebook kernel it drives would start torch with one thread per
# core: two workers on two cores then oversubscribe them, and torch's threads spin-wait on each other.
# Sharing the cores out (one thread per worker on two cores) halved `make test` here, 203 s -> 104 s.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = max(1, (os.cpu_count() or 1) // _workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    if "torch" in sys.modules:  # already imported (by a plugin): its thread pool exists, resize it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Inductor compiles C++ kernels in a pool of worker processes by default. One CI run stalled without
# any error inside the min-versions stage's unit tests (torch 2.5.1, two xdist workers) while the same
# suite passes in 50 s here; a compile pool started from an xdist worker is the one piece of the suite
# that waits on other processes with no timeout of its own. One compile thread removes the pool (the
# tests' few small kernels compile as fast in-process), and pytest-timeout (pyproject.toml) turns any
# remaining hang into a failure with every thread's stack. Set before torch's inductor config loads.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
