"""Metrics: hand-computed cases (the empty-mask convention included), and agreement with
torchmetrics, an independent implementation, on random masks."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import (
    binary_f1_score,
    binary_jaccard_index,
    binary_precision,
    binary_recall,
    multiclass_f1_score,
    multiclass_jaccard_index,
    multiclass_precision,
    multiclass_recall,
)
from torchmetrics.functional.segmentation import dice_score

from unetkit.evaluation.metrics import SegmentationMetrics, confusion_matrices, logits_to_labels

approx = lambda x: pytest.approx(x, abs=1e-9)  # noqa: E731


def scores(pred, target, num_classes=2, **kwargs) -> dict:
    metrics = SegmentationMetrics(num_classes, **kwargs)
    metrics.update(torch.as_tensor(pred), torch.as_tensor(target))
    return metrics.compute()


# Three 2x2 images: a partial hit, both empty, and a false alarm on an empty truth.
TRUTH = [[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]]
PRED = [[[1, 0], [1, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]]


def test_binary_by_hand():
    s = scores(PRED, TRUTH)
    # Per image: A has TP 1, FP 1, FN 1 -> Dice 2/4, IoU 1/3; B: truth and prediction empty
    # -> 1 and 1 (the convention); C: truth empty, one pixel predicted -> 0 and 0.
    assert s["mDice_point"] == approx((0.5 + 1 + 0) / 3)
    assert s["mIoU_point"] == approx((1 / 3 + 1 + 0) / 3)
    # Dataset level, from the summed counts TP 1, FP 2, FN 1: the empty image B adds nothing.
    assert s["dice"] == approx(2 / 5)
    assert s["iou"] == approx(1 / 4)
    assert s["precision"] == approx(1 / 3)
    assert s["recall"] == approx(1 / 2)
    assert s["accuracy"] == approx(9 / 12)
    assert s["images"] == 3
    assert "per_class" not in s  # binary results are flat


def test_empty_mask_convention():
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    one = empty.clone()
    one[0, 1, 1] = 1
    assert scores(empty, empty)["mDice_point"] == 1.0 and scores(empty, empty)["mIoU_point"] == 1.0
    # a false alarm
    assert scores(one, empty)["mDice_point"] == 0.0 and scores(one, empty)["mIoU_point"] == 0.0
    assert scores(empty, one)["mDice_point"] == 0.0  # missed lesion
    # Dataset level with nothing anywhere: Dice/IoU 1 (nothing to find, nothing found), while
    # precision and recall, undefined, are 0.
    s = scores(empty, empty)
    assert (s["dice"], s["iou"], s["precision"], s["recall"]) == (1.0, 1.0, 0.0, 0.0)


def test_per_image_and_dataset_level_differ_as_defined():
    # A large lesion found perfectly and a small one missed entirely: per image the misses
    # weigh as much as the hits (mDice 0.5); summed over pixels the large lesion dominates.
    truth = torch.zeros(2, 10, 10, dtype=torch.long)
    truth[0, :8, :8] = 1  # 64 pixels
    truth[1, 0, 0] = 1  # 1 pixel
    pred = truth.clone()
    pred[1] = 0
    s = scores(pred, truth)
    assert s["mDice_point"] == approx(0.5)
    assert s["dice"] == approx(2 * 64 / (2 * 64 + 1))


def test_accumulates_across_batches():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 3, (6, 8, 8), generator=gen)
    truth = torch.randint(0, 3, (6, 8, 8), generator=gen)
    whole = scores(pred, truth, 3)
    parts = SegmentationMetrics(3)
    for i in range(0, 6, 4):
        parts.update(pred[i:i + 4], truth[i:i + 4])
    assert flat(parts.compute()) == pytest.approx(flat(whole))
    # the flat state round-trips (it is what processes all-reduce)
    again = SegmentationMetrics(3)
    again.load_state(parts.state() * 1)
    assert flat(again.compute()) == pytest.approx(flat(whole))


def flat(result: dict) -> dict:
    """The numbers of a result, nested per-class scores as 'class/key' entries."""
    out = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    for name, values in result.get("per_class", {}).items():
        out.update({f"{name}/{k}": v for k, v in values.items()})
    return out


def test_multiclass_by_hand():
    truth = torch.tensor([[[0, 1, 2], [0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1], [2, 1, 0]]])
    s = scores(pred, truth, 3, class_names=["bg", "a", "b"])
    # Rows are the truth, columns the prediction.
    assert s["confusion_matrix"] == [[1, 0, 1], [1, 2, 0], [0, 1, 0]]
    a, b, bg = s["per_class"]["a"], s["per_class"]["b"], s["per_class"]["bg"]
    # class a: TP 2, FP 1, FN 1; class b: TP 0, FP 1, FN 1; background: TP 1, FP 1, FN 1.
    assert (a["dice"], a["iou"], a["precision"], a["recall"]) == (approx(2 / 3), approx(1 / 2),
                                                                approx(2 / 3), approx(2 / 3))
    assert (b["dice"], b["iou"], b["precision"], b["recall"]) == (0, 0, 0, 0)
    assert bg["dice"] == approx(1 / 2) and bg["pixels"] == 2 and a["pixels"] == 3
    # The headline scores average the foreground classes; *_with_background all three.
    assert s["dice"] == approx(1 / 3) and s["mDice_point"] == approx(1 / 3)
    assert s["dice_with_background"] == approx((1 / 2 + 2 / 3 + 0) / 3)
    assert s["accuracy"] == approx(3 / 6)


def test_ignore_index():
    truth = torch.tensor([[[1, 255], [0, 255]]])
    pred = torch.tensor([[[1, 1], [0, 1]]])  # wrong only where the truth is ignored
    s = scores(pred, truth, ignore_index=255)
    assert s["mDice_point"] == 1.0 and s["dice"] == 1.0 and s["accuracy"] == 1.0


def test_logits_to_labels():
    binary = torch.tensor([[[[-1.0, 0.1], [2.0, -0.1]]]])
    assert logits_to_labels(binary).tolist() == [[[0, 1], [1, 0]]]
    assert logits_to_labels(binary, threshold=0.6).tolist() == [[[0, 0], [1, 0]]]
    multi = torch.tensor([[[[1.0]], [[3.0]], [[2.0]]]])
    assert logits_to_labels(multi).tolist() == [[[1]]]


def test_confusion_matrices_per_image():
    pred = torch.tensor([[[0, 1]], [[1, 1]]])
    truth = torch.tensor([[[0, 0]], [[1, 0]]])
    assert confusion_matrices(pred, truth, 2).tolist() == [[[1, 1], [0, 0]], [[0, 1], [0, 1]]]


# --- against torchmetrics ----------------------------------------------------------------------

def random_masks(num_classes: int, seed: int, n=5, size=(24, 20)):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.zeros(n, *size, dtype=torch.long)
    for i in range(n):  # blobs, so that classes cover very different areas per image
        for k in range(1, num_classes):
            y = torch.randint(0, size[0] - 6, (1,), generator=gen)
            x = torch.randint(0, size[1] - 6, (1,), generator=gen)
            h, w = torch.randint(2, 12, (2,), generator=gen)
            truth[i, y:y + h, x:x + w] = k
    noise = torch.rand(n, *size, generator=gen) < 0.25
    pred = torch.where(noise, torch.randint(0, num_classes, (n, *size), generator=gen), truth)
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_agrees_with_torchmetrics(seed):
    pred, truth = random_masks(2, seed)
    s = scores(pred, truth)
    assert s["dice"] == pytest.approx(binary_f1_score(pred, truth).item(), abs=1e-6)
    assert s["iou"] == pytest.approx(binary_jaccard_index(pred, truth).item(), abs=1e-6)
    assert s["precision"] == pytest.approx(binary_precision(pred, truth).item(), abs=1e-6)
    assert s["recall"] == pytest.approx(binary_recall(pred, truth).item(), abs=1e-6)
    # Per image: torchmetrics' sample-wise Dice (no empty masks here, where the two differ:
    # torchmetrics gives NaN for an image empty in truth and prediction, unetkit 1).
    per_image = dice_score(pred, truth, num_classes=2, include_background=False,
                           input_format="index", aggregation_level="samplewise", average="none")
    assert not per_image.isnan().any()
    assert s["mDice_point"] == pytest.approx(per_image.mean().item(), abs=1e-6)
    glob = dice_score(pred, truth, num_classes=2, include_background=False, input_format="index",
                      aggregation_level="global", average="none")
    assert s["dice"] == pytest.approx(glob.item(), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_agrees_with_torchmetrics(seed):
    k = 4
    pred, truth = random_masks(k, seed)
    s = scores(pred, truth, k)
    tm = {"dice": multiclass_f1_score(pred, truth, k, average="none"),
          "iou": multiclass_jaccard_index(pred, truth, k, average="none"),
          "precision": multiclass_precision(pred, truth, k, average="none"),
          "recall": multiclass_recall(pred, truth, k, average="none")}
    for key, values in tm.items():
        ours = [s["per_class"][str(c)][key] for c in range(k)]
        assert ours == pytest.approx(values.tolist(), abs=1e-6), key
        assert s[key] == pytest.approx(values[1:].mean().item(), abs=1e-6), key
    per_image = dice_score(pred, truth, num_classes=k, include_background=True,
                           input_format="index", aggregation_level="samplewise", average="none")
    assert not per_image.isnan().any()
    ours = [s["per_class"][str(c)]["mDice_point"] for c in range(k)]
    assert ours == pytest.approx(per_image.mean(0).tolist(), abs=1e-6)
