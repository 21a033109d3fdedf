"""helpers.versions: release comparison and the one-sentence guard."""

import pytest
import torch

from helpers import versions


def test_release_parses_suffixes():
    assert versions._release("2.12.0.dev20260101+cpu") == (2, 12, 0)
    assert versions._release("2.4") == (2, 4, 0)
    assert versions._release("2.14.1+cu130") == (2, 14, 1)


def test_bad_versions_are_refused():
    with pytest.raises(ValueError, match="version"):
        versions._release("latest")
    with pytest.raises(TypeError, match="version"):
        versions._release(2.12)


def test_at_least_compares_numerically_not_as_text(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1")
    assert not versions.torch_at_least("2.12")  # as text "2.9" > "2.12"
    assert versions.torch_at_least("2.9.1")
    assert versions.torch_at_least("2.4")


def test_guard_prints_one_sentence_and_returns_false_on_an_older_torch(monkeypatch, capsys):
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu126")
    assert versions.requires_torch("2.13", "nn.LinearCrossEntropyLoss") is False
    out = capsys.readouterr().out
    assert out == (
        "Skipped: nn.LinearCrossEntropyLoss is new in torch 2.13; this kernel runs torch 2.11.0+cu126.\n"
    )


def test_guard_is_silent_and_true_on_a_new_enough_torch(monkeypatch, capsys):
    monkeypatch.setattr(torch, "__version__", "2.13.0")
    assert versions.requires_torch("2.13", "nn.LinearCrossEntropyLoss") is True
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="feature"):
        versions.requires_torch("2.13", "")
