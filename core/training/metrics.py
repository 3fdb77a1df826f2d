"""Task metrics computed from predictions: the numbers every report is built from."""

from __future__ import annotations

import numpy as np


def macro_f1(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class with no true and no
    predicted sample scores 0 (scikit-learn's ``zero_division=0``). Computed from one confusion
    matrix: it runs every epoch, where scikit-learn's input checks would cost more than the metric."""
    confusion = np.bincount(y_true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and log loss of class probabilities ``proba`` (n, C)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    pred = proba.argmax(axis=1)
    eps = 1e-7
    picked = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0)
    return {
        "accuracy": float(np.mean(pred == y_true)),
        "f1": macro_f1(y_true, pred, proba.shape[1]),
        "log_loss": float(-np.mean(np.log(picked))),
    }


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² (R² is ``None``-free: a constant target gives 0 when predicted exactly)."""
    y_true = y_true.reshape(len(y_true), -1)
    pred = pred.reshape(len(pred), -1)
    mse = float(np.mean((y_true - pred) ** 2))
    var = float(np.mean((y_true - y_true.mean(axis=0)) ** 2))
    return {"mse": mse, "mae": float(np.mean(np.abs(y_true - pred))),
            "r2": float(1.0 - mse / var) if var > 0 else 0.0}


def multilabel_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Per-label accuracy, micro F1 (2 TP / (2 TP + FP + FN) over every label) and mean binary log loss."""
    y_true = np.asarray(y_true)
    pred = (proba >= 0.5).astype(int)
    eps = 1e-7
    p = np.clip(proba, eps, 1 - eps)
    tp = float(np.sum((pred == 1) & (y_true == 1)))
    denominator = float(np.sum(pred == 1) + np.sum(y_true == 1))
    return {
        "accuracy": float(np.mean(pred == y_true)),
        "f1": 2 * tp / denominator if denominator > 0 else 0.0,
        "log_loss": float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))),
    }


def task_metrics(task_type: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """The metrics of ``task_type`` for model output (probabilities, or values for regression)."""
    if task_type == "classification":
        return classification_metrics(y_true, output)
    if task_type == "multilabel":
        return multilabel_metrics(y_true, output)
    return regression_metrics(y_true, output)


def primary_loss(task_type: str, y_true: np.ndarray, output: np.ndarray) -> float:
    """The loss ensemble weighting minimises: log loss, or MSE for regression."""
    m = task_metrics(task_type, y_true, output)
    return m["mse"] if task_type == "regression" else m["log_loss"]


__all__ = ["classification_metrics", "macro_f1", "multilabel_metrics", "primary_loss", "regression_metrics", "task_metrics"]
