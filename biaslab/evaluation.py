"""Accuracies, generalization error and the per-class report of a trained model."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support


@dataclasses.dataclass
class Evaluation:
    metrics: dict[str, float]
    report: str
    confusion: np.ndarray


def predict_labels(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=1)


def evaluate(
    model: keras.Model,
    x_train: np.ndarray,
    y_train_biased: np.ndarray,
    y_train_clean: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: tuple[str, ...],
) -> Evaluation:
    """Compute train accuracy on the biased and the clean labels, test accuracy, and per-class scores.

    ``gen_error`` is train accuracy on the biased labels minus test accuracy.
    """
    train_pred = predict_labels(model, x_train)
    test_pred = predict_labels(model, x_test)
    metrics = {
        "train_accuracy": float(np.mean(train_pred == y_train_biased)),
        "train_accuracy_clean": float(np.mean(train_pred == y_train_clean)),
        "test_accuracy": float(np.mean(test_pred == y_test)),
    }
    metrics["gen_error"] = metrics["train_accuracy"] - metrics["test_accuracy"]

    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_test, test_pred, labels=labels, zero_division=0
    )
    for index, name in enumerate(class_names):
        metrics[f"test_precision_{name}"] = float(precision[index])
        metrics[f"test_recall_{name}"] = float(recall[index])
        metrics[f"test_f1_{name}"] = float(f1[index])
    report = classification_report(
        y_test, test_pred, labels=labels, target_names=list(class_names), digits=4, zero_division=0
    )
    return Evaluation(metrics, report, confusion_matrix(y_test, test_pred, labels=labels))
