"""Per-class metrics: hand-counted values, torchmetrics' confusion matrix, the means with and
without background."""

from __future__ import annotations

import pytest
import torch

from unetkit.evaluation.metrics import SegmentationMetrics

NAMES = ["background", "neoplastic", "non_neoplastic"]


def test_per_class_scores_by_hand():
    truth = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 2, 0]]])
    m = SegmentationMetrics(3, NAMES)
    m.update(pred, truth)
    out = m.compute()
    # rows truth, columns prediction
    assert out["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    pc = out["per_class"]
    # background: tp 2, fp 1, fn 1 -> Dice 4/6; neoplastic: tp 2, fp 1 -> 4/5;
    # non: tp 2, fn 1 -> 4/5
    assert pc["background"]["dice"] == pytest.approx(4 / 6)
    assert pc["neoplastic"]["dice"] == pytest.approx(4 / 5)
    assert pc["non_neoplastic"]["iou"] == pytest.approx(2 / 3)
    assert pc["neoplastic"]["precision"] == pytest.approx(2 / 3)
    assert pc["non_neoplastic"]["recall"] == pytest.approx(2 / 3)
    assert pc["neoplastic"]["pixels"] == 2
    assert out["dice"] == pytest.approx(4 / 5)  # mean over foreground classes
    assert out["dice_with_background"] == pytest.approx((4 / 6 + 4 / 5 + 4 / 5) / 3)
    assert out["iou_with_background"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    assert out["accuracy"] == pytest.approx(6 / 8)


def test_per_image_mean_counts_an_absent_class_predicted_absent_as_right():
    m = SegmentationMetrics(3, NAMES)
    truth = torch.tensor([[[1, 1], [0, 0]], [[2, 2], [0, 0]]])
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 2], [0, 0]]])
    m.update(pred, truth)
    out = m.compute()
    # image 1: neoplastic 1, non-neoplastic absent -> 1; image 2: neoplastic absent -> 1,
    # non-neoplastic tp 1 fn 1 -> 2/3.
    assert out["per_class"]["neoplastic"]["mDice_point"] == pytest.approx(1.0)
    assert out["per_class"]["non_neoplastic"]["mDice_point"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["mDice_point"] == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)


def test_against_torchmetrics_over_batches_with_ignore_index():
    from torchmetrics.functional.classification import multiclass_confusion_matrix
    from torchmetrics.functional.segmentation import dice_score

    gen = torch.Generator().manual_seed(0)
    m = SegmentationMetrics(3, NAMES, ignore_index=255)
    truths, preds = [], []
    for _ in range(3):
        truth = torch.randint(0, 3, (4, 16, 16), generator=gen)
        pred = torch.where(torch.rand(4, 16, 16, generator=gen) < 0.7, truth,
                           torch.randint(0, 3, (4, 16, 16), generator=gen))
        truth[:, 0] = 255
        m.update(pred, truth)
        truths.append(truth), preds.append(pred)
    truth, pred = torch.cat(truths), torch.cat(preds)
    out = m.compute()
    cm = multiclass_confusion_matrix(pred, truth, 3, ignore_index=255)
    assert out["confusion_matrix"] == cm.tolist()
    # Per-image Dice of each class (torchmetrics, no ignore: the ignored row is cut off both)
    ref = dice_score(torch.nn.functional.one_hot(pred[:, 1:], 3).permute(0, 3, 1, 2),
                     torch.nn.functional.one_hot(truth[:, 1:], 3).permute(0, 3, 1, 2),
                     num_classes=3, include_background=True, average="none", input_format="one-hot")
    for i, name in enumerate(NAMES):
        assert out["per_class"][name]["mDice_point"] == pytest.approx(ref[:, i].mean().item(),
                                                                      rel=1e-6)
