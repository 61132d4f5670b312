"""Segmentation metrics from confusion counts, so they sum over a data set and across processes.

Definitions (K classes, class 0 the background; "foreground classes" are 1..K-1):
- per image and class: Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN).
  Empty-mask convention: when a class is absent from both the truth and the prediction of an
  image, that image's Dice and IoU for the class are 1 (the prediction is exactly right).
- mDice_point, mIoU_point: the per-image scores averaged over images, then over foreground
  classes (Dice and IoU at the operating point; the literature's mDice / mIoU average over 256
  thresholds of the probability map instead: see `field_metrics` and core.metric_names).
- dice, iou: dataset-level, from TP/FP/FN summed over all images, averaged over foreground classes.
- precision, recall: dataset-level TP/(TP+FP) and TP/(TP+FN), averaged over foreground classes
  (0 when the denominator is 0); accuracy: correctly classified pixels / all counted pixels.
- per_class: each class's scores, background included; the means with and without background.
"""

from __future__ import annotations

import torch

# The scores train.monitor may name to pick the best weights (and drive the plateau schedule).


def logits_to_labels(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, H, W) class indices: sigmoid > threshold for one logit,
    argmax else."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0].float()) > threshold).long()
    return logits.argmax(1)


def confusion_matrices(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                       ignore_index: int | None = None) -> torch.Tensor:
    """(B, K, K) per-image confusion matrices, rows = truth, columns = prediction."""
    b = pred.shape[0]
    pred, target = pred.reshape(b, -1).long(), target.reshape(b, -1).long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None \
        else target != ignore_index
    valid &= (target >= 0) & (target < num_classes)
    k2 = num_classes * num_classes
    index = torch.arange(b, device=pred.device)[:, None] * k2 + target * num_classes + pred
    counts = torch.bincount(index[valid], minlength=b * k2)
    return counts.reshape(b, num_classes, num_classes)


def _scores(tp, fp, fn):
    """Dice and IoU with the empty-mask convention (0/0 -> 1)."""
    denom_d, denom_i = 2 * tp + fp + fn, tp + fp + fn
    dice = torch.where(denom_d > 0, 2 * tp / denom_d.clamp_min(1), torch.ones_like(tp))
    iou = torch.where(denom_i > 0, tp / denom_i.clamp_min(1), torch.ones_like(tp))
    return dice, iou


def _ratio(num, den):
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


class SegmentationMetrics:
    """Accumulates counts batch by batch; `compute()` gives the scores for everything seen.

    State is three tensors of sums (the confusion matrix, per-image Dice and IoU summed over
    images, and the image count), so processes can all-reduce it with `state()`/`load_state()`.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None,
                 ignore_index: int | None = None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self.confusion = torch.zeros(k, k, dtype=torch.float64)
        self.image_scores = torch.zeros(2, k, dtype=torch.float64)  # sums of per-image Dice, IoU
        self.images = torch.zeros((), dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: (B, H, W) class indices (pred from `logits_to_labels`)."""
        cm = confusion_matrices(pred, target, self.num_classes, self.ignore_index).double().cpu()
        tp = cm.diagonal(dim1=1, dim2=2)
        fp, fn = cm.sum(1) - tp, cm.sum(2) - tp
        dice, iou = _scores(tp, fp, fn)
        self.confusion += cm.sum(0)
        self.image_scores += torch.stack([dice.sum(0), iou.sum(0)])
        self.images += cm.shape[0]

    def state(self) -> torch.Tensor:
        return torch.cat([self.confusion.flatten(), self.image_scores.flatten(), self.images[None]])

    def load_state(self, flat: torch.Tensor) -> None:
        k = self.num_classes
        flat = flat.double().cpu()
        self.confusion = flat[: k * k].reshape(k, k).clone()
        self.image_scores = flat[k * k: k * k + 2 * k].reshape(2, k).clone()
        self.images = flat[-1].clone()

    def compute(self) -> dict:
        cm = self.confusion
        tp = cm.diagonal()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        dice, iou = _scores(tp, fp, fn)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        n = self.images.clamp_min(1)
        m_dice, m_iou = self.image_scores[0] / n, self.image_scores[1] / n
        fg = slice(1, None)
        out = {
            "mDice_point": m_dice[fg].mean().item(), "mIoU_point": m_iou[fg].mean().item(),
            "dice": dice[fg].mean().item(), "iou": iou[fg].mean().item(),
            "precision": precision[fg].mean().item(), "recall": recall[fg].mean().item(),
            "accuracy": (tp.sum() / cm.sum().clamp_min(1)).item(),
            "dice_with_background": dice.mean().item(), "iou_with_background": iou.mean().item(),
            "images": int(self.images.item()),
        }
        if self.num_classes > 2:
            out["per_class"] = {
                name: {"dice": dice[i].item(), "iou": iou[i].item(),
                       "mDice_point": m_dice[i].item(),
                       "mIoU_point": m_iou[i].item(), "precision": precision[i].item(),
                       "recall": recall[i].item(), "pixels": int(cm[i].sum().item())}
                for i, name in enumerate(self.class_names)}
            out["confusion_matrix"] = cm.long().tolist()
        return out
