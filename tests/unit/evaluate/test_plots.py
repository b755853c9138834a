"""What the comparison's plots show, read back from the figures they save: the training curves' points, the
per-example score histograms, the confusion matrices' counts."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from bioqa.evaluate import report
from bioqa.evaluate.comparison import compare_rows


@pytest.fixture
def saved(monkeypatch):
    """Every figure saved, kept for reading after it is written."""
    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def rows(predictions, labels=None):
    references = ["insulin lowers blood glucose", "aspirin thins the blood", "statins lower cholesterol"] * 4
    found = []
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        row = {"id": str(i), "question": f"q{i}", "reference": reference, "prediction": prediction}
        if labels:
            row |= {"label": ("yes", "no")[i % 2], "predicted_label": labels[i]}
        found.append(row)
    return found


BASE = rows(["insulin helps", "aspirin", "statins"] * 4, ["yes"] * 12)
CAND = rows(["insulin lowers glucose", "aspirin thins blood", "statins lower cholesterol"] * 4, ["yes", "no"] * 6)


def test_training_curves_plot_every_logged_point(saved, tmp_path):
    history = [
        {"step": 4, "loss": 3.0},
        {"step": 8, "loss": 2.5},
        {"step": 8, "eval_loss": 2.7, "eval_rougeL": 0.1},
        {"step": 12, "loss": 2.0},
        {"step": 16, "eval_loss": 2.4, "eval_rougeL": 0.3},
        {"step": 16, "train_runtime": 9.0},
        {"step": 16, "eval_loss": 2.4, "eval_rougeL": 0.3},  # the final evaluation
    ]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": history}))
    assert report.plot_training_curves(tmp_path / "curves.png", state)
    (figure,) = saved
    lines = {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for ax in figure.axes for line in ax.lines
    }
    assert lines["train loss"] == ([4, 8, 12], [3.0, 2.5, 2.0])
    assert lines["eval_loss"] == ([8, 16], [2.7, 2.4]) and lines["eval_rougeL"] == ([8, 16], [0.1, 0.3])
    stars = [c.get_offsets().tolist() for ax in figure.axes for c in ax.collections]
    assert [[16.0, 0.3]] in stars and [[16.0, 2.4]] in stars  # the final adapter, once per metric


def test_histograms_count_every_examples_score(saved, tmp_path):
    result = compare_rows(BASE, CAND, samples=100, seed=0, labels=("yes", "no"))
    report.plot_distributions(tmp_path / "scores.png", result, ("zero-shot", "fine-tuned"))
    (figure,) = saved
    axis = next(ax for ax in figure.axes if ax.get_title() == "per-example rougeL")
    heights = [patch.get_height() for patch in axis.patches]
    for key, part in (("baseline", heights[:20]), ("candidate", heights[20:])):
        expected, _ = np.histogram(result["scores"][key].per_example["rougeL"], bins=20, range=(0, 1))
        assert part == expected.tolist(), key
    assert sum(heights) == 2 * len(BASE)


def test_confusion_plots_show_both_matrices(saved, tmp_path):
    result = compare_rows(BASE, CAND, samples=100, seed=0, labels=("yes", "no"))
    report.plot_confusions(tmp_path / "confusion.png", result, ("zero-shot", "fine-tuned"))
    (figure,) = saved
    shown = [[int(t.get_text()) for t in ax.texts] for ax in figure.axes if ax.texts]
    # gold yes/no by predicted yes/no/unparsed: the baseline says yes to all 12, the candidate gets all 12 right
    assert shown == [[6, 0, 0, 6, 0, 0], [6, 0, 0, 0, 6, 0]]
