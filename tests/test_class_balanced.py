"""Cui et al.'s CB Focal and Cao et al.'s CB RS, each against an independent implementation from the paper."""

import math

import pytest
import torch
from torch import nn

from helpers.class_balanced import (
    ClassBalancedSigmoidFocalLoss,
    class_sampling_probabilities,
    effective_number_sampling,
    init_prior_bias,
)
from helpers.imbalance import long_tailed_counts
from helpers.train import TrainConfig, _epoch_indices


def cb_focal_from_the_paper(logits, target, counts, beta, gamma):
    """Cui et al. (2019), Eq. 5-7 and Sec. 4, written out element by element in float64.

    E_n = (1 - beta^n) / (1 - beta); w_c = C (1/E_c) / sum_k (1/E_k);
    each class c of example i is a binary problem with z = logit, t = [c == y_i]:
    p_t = sigmoid(z) if t else 1 - sigmoid(z); FL = -(1 - p_t)^gamma log(p_t);
    loss = sum_i w_{y_i} sum_c FL_ic / (number of positive labels = N).
    """
    n, c = logits.shape
    effective = [(1 - beta**k) / (1 - beta) for k in counts]
    inv = [1 / e for e in effective]
    w = [c * v / sum(inv) for v in inv]
    total = 0.0
    for i in range(n):
        for k in range(c):
            z = float(logits[i, k])
            log_p = -math.log1p(math.exp(-z)) if z > -30 else z  # log sigmoid(z)
            log_q = -math.log1p(math.exp(z)) if z < 30 else -z  # log (1 - sigmoid(z))
            positive = k == int(target[i])
            log_pt = log_p if positive else log_q
            total += w[int(target[i])] * -((1 - math.exp(log_pt)) ** gamma) * log_pt
    return total / n


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_cb_focal_matches_the_paper_on_random_inputs(gamma):
    g = torch.Generator().manual_seed(0)
    counts = long_tailed_counts(5000, 10, 100)
    logits = 4 * torch.randn(16, 10, generator=g, dtype=torch.float64)
    target = torch.randint(0, 10, (16,), generator=g)
    loss = ClassBalancedSigmoidFocalLoss(counts, beta=0.9999, gamma=gamma)
    reference = cb_focal_from_the_paper(logits, target, counts, 0.9999, gamma)
    assert loss(logits, target).item() == pytest.approx(reference, rel=1e-6)  # the weights are float32 buffers
    assert loss(logits.float(), target).item() == pytest.approx(reference, rel=1e-5)
    per_example = ClassBalancedSigmoidFocalLoss(counts, gamma=gamma, reduction="none")(logits, target)
    assert per_example.shape == (16,) and per_example.sum().item() == pytest.approx(
        ClassBalancedSigmoidFocalLoss(counts, gamma=gamma, reduction="sum")(logits, target).item()
    )


def test_cb_focal_has_torchvision_values_and_finite_gradients_at_saturated_logits():
    from torchvision.ops import sigmoid_focal_loss

    counts = (40, 15, 6)
    logits = torch.tensor([[18.0, -18.0, -18.0], [0.5, 0.0, -1.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    onehot = torch.nn.functional.one_hot(target, 3).float()
    for gamma in (1.0, 2.0):
        loss = ClassBalancedSigmoidFocalLoss(counts, beta=0.9, gamma=gamma, reduction="none")
        tv = loss.weight[target] * sigmoid_focal_loss(logits, onehot, alpha=-1, gamma=gamma, reduction="none").sum(1)
        torch.testing.assert_close(loss(logits, target), tv)
    # gamma = 0.5: torchvision's gradient of the saturated row is NaN; this loss's is finite
    (tv_grad,) = torch.autograd.grad(sigmoid_focal_loss(logits, onehot, alpha=-1, gamma=0.5, reduction="sum"), logits)
    assert tv_grad[0].isnan().all()
    loss = ClassBalancedSigmoidFocalLoss(counts, beta=0.9, gamma=0.5)
    (grad,) = torch.autograd.grad(loss(logits, target), logits)
    assert torch.isfinite(grad).all()


def test_cb_focal_is_not_the_softmax_focal_loss_and_follows_the_input():
    from helpers.losses import FocalLoss, class_balanced_weights

    counts = [100, 10, 1]
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 0, 1])
    sigmoid = ClassBalancedSigmoidFocalLoss(counts, beta=0.99, gamma=1.0)
    softmax = FocalLoss(gamma=1.0, alpha=class_balanced_weights(counts, 0.99))
    assert not torch.allclose(sigmoid(logits, target), softmax(logits, target))
    assert sigmoid(logits.double(), target).dtype == torch.float64
    assert "weight" in dict(sigmoid.named_buffers())
    grad = torch.autograd.grad(sigmoid(logits.requires_grad_(), target), logits)[0]
    assert torch.isfinite(grad).all()
    with pytest.raises(ValueError, match="3 classes but class_counts has 2"):
        ClassBalancedSigmoidFocalLoss([5, 1])(logits, target)
    with pytest.raises(ValueError, match=r"target must be in \[0, 3\)"):
        sigmoid(logits, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="gamma"):
        ClassBalancedSigmoidFocalLoss(counts, gamma=-1)
    with pytest.raises(ValueError, match="beta"):
        ClassBalancedSigmoidFocalLoss(counts, beta=1.0)


def test_prior_bias_starts_every_sigmoid_at_one_over_c():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))
    init_prior_bias(model)
    assert torch.allclose(model[2].bias, torch.full((10,), -math.log(9.0)))
    assert torch.allclose(torch.sigmoid(model[2].bias), torch.full((10,), 0.1))

    class Scaled(nn.Module):  # a model that multiplies its logits, as FastNet does
        def __init__(self):
            super().__init__()
            self.classifier, self.logit_scale = nn.Linear(3, 10), 0.125

        def forward(self, x):
            return self.classifier(x) * self.logit_scale

    scaled = init_prior_bias(Scaled())
    assert torch.allclose(scaled(torch.zeros(1, 3)), torch.full((1, 10), -math.log(9.0)))
    with pytest.raises(ValueError, match="nn.Linear"):
        init_prior_bias(nn.Conv2d(1, 1, 1))


def test_cb_rs_sampling_matches_cao_et_al():
    counts = long_tailed_counts(5000, 10, 100)  # CIFAR-10-LT at ratio 100, as in the papers
    beta = 0.9999
    weights = effective_number_sampling(counts, beta)
    expected = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts], dtype=torch.float64)
    assert torch.allclose(weights, expected, rtol=1e-9)
    shares = class_sampling_probabilities(counts, beta)
    # the class shares quoted in issue 15: 0.119 for the head class down to 0.094 for the tail
    assert round(shares[0].item(), 3) == 0.119 and round(shares[-1].item(), 3) == 0.094
    assert torch.all(shares[:-1] >= shares[1:]) and shares.sum().item() == pytest.approx(1.0)
    assert torch.equal(effective_number_sampling(counts, 0.0), torch.ones(10, dtype=torch.float64))


def test_trainer_draws_classes_with_the_cb_rs_shares():
    counts = long_tailed_counts(500, 4, 20)
    y = torch.arange(4).repeat_interleave(torch.tensor(counts))
    weights = tuple(effective_number_sampling(counts, 0.99).tolist())
    gen = torch.Generator().manual_seed(0)
    draws = torch.cat([_epoch_indices(y, False, gen, 4, weights) for _ in range(40)])
    observed = torch.bincount(y[draws], minlength=4).double() / len(draws)
    assert torch.allclose(observed, class_sampling_probabilities(counts, 0.99), atol=0.01)
    assert TrainConfig(sampling_weights=[1, 2]).to_dict()["sampling_weights"] == [1.0, 2.0]
    with pytest.raises(ValueError, match="sampling_weights"):
        TrainConfig(sampling_weights=[1.0, 0.0])
