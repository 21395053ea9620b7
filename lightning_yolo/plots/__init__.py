"""YOLOv5's run plots drawn with matplotlib and OpenCV, without Lightning and without touching pyplot's global state.

Files and sizes as YOLOv5 writes them: `labels.jpg` 1600x1600, `labels_correlogram.jpg` 2000x2000, batch mosaics
(`train_batch*.jpg`, `val_batch*_labels.jpg`, `val_batch*_pred.jpg`) up to 1920x1920, PR / F1 / P / R curves
2250x1500, `confusion_matrix.png` 3000x2250, `results.png` 2400x1200.
"""

from lightning_yolo.plots._figure import PALETTE, class_color
from lightning_yolo.plots.confusion import plot_confusion_matrix
from lightning_yolo.plots.curves import plot_mc_curve, plot_pr_curve
from lightning_yolo.plots.images import plot_images, predictions_to_targets
from lightning_yolo.plots.labels import plot_labels
from lightning_yolo.plots.results import RESULT_COLUMNS, plot_results

__all__ = [
    "PALETTE",
    "RESULT_COLUMNS",
    "class_color",
    "plot_confusion_matrix",
    "plot_images",
    "plot_labels",
    "plot_mc_curve",
    "plot_pr_curve",
    "plot_results",
    "predictions_to_targets",
]
