"""Sentinel: under CI the suite must run in quick mode.

A quick mode that silently never turns on makes CI run the full experiments (or time out)
while everyone believes it is testing the fast path. This test fails loudly instead.
"""

import os

from helpers.runtime import in_ci, quick_mode


def test_ci_runs_in_quick_mode():
    if in_ci():
        assert quick_mode(), (
            f"CI={os.environ.get('CI')!r} but LOSSBOOK_QUICK is not set: run the suite through "
            "`make test`, which sets LOSSBOOK_QUICK=1"
        )
    else:
        # Outside CI either mode is legitimate; the flag must still parse.
        assert quick_mode() in (True, False)
