"""helpers.longtail_tables.plain_ce_rises: rises of the plain training CE, apart from the DRW switch."""

import pytest
import torch

from helpers.longtail_tables import plain_ce_rises
from helpers.longtail_types import RunRecord


def _run(curve, **extra):
    return RunRecord("m", 0, {}, {"train_ce": curve}, torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), [1, 1],
                     extra=extra)  # fmt: skip


def test_rises_without_switch_all_count():
    assert plain_ce_rises(_run([1.0, 0.8, 0.9, 0.7, 0.75])) == (2, 0)
    assert plain_ce_rises(_run([1.0, 0.8, 0.6])) == (0, 0)


def test_rise_at_a_switch_on_an_epoch_boundary():
    # 5 epochs of 10 steps, DRW from step 40: epoch 4 (from 0) is the first re-weighted one
    curve = [1.0, 0.8, 0.6, 0.5, 0.7]
    assert plain_ce_rises(_run(curve, drw_start_step=40, drw_fraction=0.8)) == (0, 1)
    # a rise before the switch still counts
    curve = [1.0, 0.8, 0.9, 0.5, 0.7]
    assert plain_ce_rises(_run(curve, drw_start_step=40, drw_fraction=0.8)) == (1, 1)


def test_switch_inside_an_epoch_covers_the_next_epoch_too():
    # 3 epochs of 10 steps, DRW from step 24 (inside epoch 2): only epochs 2 (and 3, absent) are at the switch
    curve = [1.0, 0.8, 0.9]
    assert plain_ce_rises(_run(curve, drw_start_step=24, drw_fraction=0.8)) == (0, 1)
    # 4 epochs of 10 steps, DRW from step 25: epochs 2 and 3 are at the switch, a rise into epoch 1 is not
    curve = [1.0, 1.1, 1.2, 1.3]
    assert plain_ce_rises(_run(curve, drw_start_step=25, drw_fraction=25 / 40)) == (1, 2)


def test_bad_switch_record_raises():
    with pytest.raises(ValueError, match="drw_fraction"):
        plain_ce_rises(_run([1.0, 0.9], drw_start_step=10, drw_fraction=0.0))


def test_a_diverged_run_keeps_the_switch_where_the_config_puts_it():
    # planned 5 epochs of 39 steps, DRW from step 156 (epoch 4); the run diverged after 2 epochs,
    # so its rise into epoch 1 came before the switch
    run = _run([1.0, 1.1], drw_start_step=156, drw_fraction=156 / 195, config={"epochs": 5})
    assert plain_ce_rises(run) == (1, 0)
    run = _run([1.0, 1.1, float("inf")], drw_start_step=156, drw_fraction=156 / 195, config={"epochs": 5})
    assert plain_ce_rises(run) == (2, 0)
