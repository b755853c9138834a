"""report.md and PNG plots for a comparison of two systems (see bioqa.comparison)."""

from __future__ import annotations

from pathlib import Path

from bioqa.errors import InputError
from bioqa.evaluate.bootstrap import MIN_EXAMPLES
from bioqa.evaluate.predictions import PredictionRow
from bioqa.evaluate.registry import get_metric, registered, score_info
from bioqa.io.files import read_json


def top_of(name: str) -> float:
    """The top of a score's scale (1 or 100; loglik_ names and unknown ones 0-1)."""
    info = score_info(name)
    return info.top if info else 1.0


def title_of(name: str) -> str:
    info = score_info(name)
    return info.title if info else name


def headlines(result: dict) -> list[str]:
    """One score per metric the comparison rescored (ROUGE-L for ROUGE), in the table's order: what is plotted,
    and the first of them ranks the report's examples."""
    if not result["scores"]:
        return []
    scores = result["scores"]["baseline"]
    return [get_metric(m).headline for m in scores.parts if get_metric(m).headline in scores.per_example]


def tested_cells(row: dict, digits: int) -> tuple[str, str]:
    """A compared metric's interval and p-value as table cells; n/a where too few examples allowed a bootstrap
    (bootstrap.MIN_EXAMPLES), which leaves them None."""
    if row["p_value"] is None:
        return "n/a", "n/a"
    return f"[{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]", f"{row['p_value']:.3g}"


def scores_table(result: dict, names: tuple[str, str], scales: bool = True) -> str:
    """The before/after table of a comparison.json: each metric (with its scale, unless `scales` is off, as
    in the demo's summary, whose header says the scales once), both scores, the difference, its interval, p."""
    lines = [
        f"| metric | {names[0]} | {names[1]} | difference | 95% CI of the difference | p |",
        "|---|---|---|---|---|---|",
    ]
    for metric, row in result["metrics"].items():
        digits = 2 if top_of(metric) > 1 else 4
        label = f"{metric} (0-{top_of(metric):g})" if scales else metric
        interval, p_value = tested_cells(row, digits)
        lines.append(
            f"| {label} | {row['baseline']:.{digits}f} | {row['candidate']:.{digits}f} | "
            f"{row['difference']:+.{digits}f} | {interval} | {p_value} |"
        )
    return "\n".join(lines)


def _how_tested(result: dict) -> str:
    boot = result["bootstrap"]
    if result["num_examples"] < MIN_EXAMPLES:
        return (
            f"no interval or p-value: a bootstrap over {result['num_examples']} paired examples (fewer than "
            f"{MIN_EXAMPLES}) repeats a handful of resamples and would mean nothing; compare on more questions."
        )
    return (
        f"intervals and p-values from a paired bootstrap ({boot['samples']} resamples, seed {boot['seed']}; BLEU "
        "recomputed per resample from sacreBLEU statistics, macro-F1 from each resample's confusion counts, the "
        "others as means of per-example scores)."
    )


def _examples_section(
    result: dict, baseline: list[PredictionRow], candidate: list[PredictionRow], names: tuple[str, str], shown: int
) -> str:
    metric = headlines(result)[0]
    a, b = result["scores"]["baseline"].per_example[metric], result["scores"]["candidate"].per_example[metric]
    title = title_of(metric)
    order = sorted(range(len(a)), key=lambda i: b[i] - a[i])
    gains = [i for i in order[::-1] if b[i] > a[i]][:shown]  # a section lists only what its title says
    losses = [i for i in order if b[i] < a[i]][:shown]
    parts = []
    for heading, indices, moved in (
        (f"Largest gains of {names[1]}", gains, "rose"),
        (f"Largest losses of {names[1]}", losses, "fell"),
    ):
        parts.append(f"### {heading} ({title} difference)\n")
        if not indices:
            parts.append(f"None: {title} {moved} on no example.")
        for i in indices:
            parts.append(
                f"- **{baseline[i]['id']}** ({b[i] - a[i]:+.3f}): {_quote(baseline[i].get('question', ''))}\n"
                f"  - reference: {_quote(baseline[i]['reference'])}\n"
                f"  - {names[0]} ({title} {a[i]:.3f}): {_quote(baseline[i]['prediction'])}\n"
                f"  - {names[1]} ({title} {b[i]:.3f}): {_quote(candidate[i]['prediction'])}"
            )
        parts.append("")
    return "\n".join(parts)


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return (text[:limit] + " ...") if len(text) > limit else (text or "(empty)")


def _lengths_table(result: dict, names: tuple[str, str]) -> str:
    lines = [
        "| system | mean words | median | max | empty answers | reference mean words |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in zip(("baseline", "candidate"), names):
        s = result["lengths"][key]
        lines.append(
            f"| {name} | {s['mean_words']:.1f} | {s['median_words']:.0f} | {s['max_words']} | {s['empty']} | "
            f"{s['reference_mean_words']:.1f} |"
        )
    return "\n".join(lines)


def plot_distributions(path: Path, result: dict, names: tuple[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = headlines(result)
    figure, axes = plt.subplots(1, len(plotted), figsize=(4.2 * len(plotted), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], plotted):
        top = top_of(metric)
        for key, name, color in (("baseline", names[0], "tab:gray"), ("candidate", names[1], "tab:blue")):
            axis.hist(
                result["scores"][key].per_example[metric], bins=20, range=(0, top), alpha=0.55, label=name, color=color
            )
        axis.set_title(f"per-example {metric}")
        axis.set_xlabel(f"score (0-{top:g})")
        axis.set_ylabel("examples")
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


LABEL_KINDS = {"generated": "read from the generated answers", "loglik": "chosen by log-likelihood"}


def confusion_table(confusion: dict[str, dict[str, int]]) -> str:
    """Gold labels as rows, predicted labels (and unparsed) as columns."""
    columns = list(next(iter(confusion.values())))
    lines = ["| gold \\ predicted | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {gold} | " + " | ".join(str(row[c]) for c in columns) + " |" for gold, row in confusion.items()]
    return "\n".join(lines)


def _labels_section(result: dict, baseline: list[PredictionRow], names: tuple[str, str], shown: int) -> str:
    """Per way of finding labels: McNemar's test, both confusion matrices, and the questions that flipped."""
    questions = {row["id"]: row.get("question", "") for row in baseline}
    parts = []
    for kind, found in result["labels"].items():
        test = found["mcnemar"]
        parts += [
            f"## Labels {LABEL_KINDS[kind]}\n",
            f"Label set: {', '.join(result['label_set'] or [])}. Exact McNemar test of accuracy: "
            f"{test['baseline_only_right']} questions only {names[0]} got right, {test['candidate_only_right']} only "
            f"{names[1]}; p = {test['p_value']:.3g}.\n",
        ]
        for key, name in zip(("baseline", "candidate"), names):
            parts += [f"Confusion matrix of {name}:\n", confusion_table(found["confusion"][key]), ""]
        for title, ids in (
            (f"right -> wrong (worse in {names[1]})", found["right_to_wrong"]),
            (f"wrong -> right (better in {names[1]})", found["wrong_to_right"]),
        ):
            parts.append(f"### Flipped {title}: {len(ids)}\n")
            parts += [f"- **{i}**: {_quote(questions[i], 160)}" for i in ids[:shown]]
            parts.append(f"- ... and {len(ids) - shown} more (comparison.json lists all)\n" if len(ids) > shown else "")
    return "\n".join(parts)


def plot_confusions(path: Path, result: dict, names: tuple[str, str]) -> None:
    """Both systems' confusion matrices side by side, one row per way of finding labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result["labels"])
    figure, axes = plt.subplots(len(kinds), 2, figsize=(9, 3.8 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        for column, (key, name) in enumerate(zip(("baseline", "candidate"), names)):
            confusion = result["labels"][kind]["confusion"][key]
            gold, predicted = list(confusion), list(next(iter(confusion.values())))
            counts = [[confusion[g][p] for p in predicted] for g in gold]
            axis = axes[row][column]
            axis.imshow(counts, cmap="Blues")
            for i, values in enumerate(counts):
                for j, value in enumerate(values):
                    axis.text(j, i, str(value), ha="center", va="center")
            axis.set_xticks(range(len(predicted)), predicted)
            axis.set_yticks(range(len(gold)), gold)
            axis.set_xlabel("predicted")
            axis.set_ylabel("gold")
            axis.set_title(f"{name}: labels {LABEL_KINDS[kind]}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def split_history(history: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Train-loss entries, evaluations during training, and evaluations after it (the final or best adapter,
    logged after the Trainer's train_runtime summary, at the last step's number)."""
    end = next((i for i, h in enumerate(history) if "train_runtime" in h), len(history))
    train = [h for h in history[:end] if "loss" in h]
    during = [h for h in history[:end] if "eval_loss" in h]
    after = [h for h in history[end:] if "eval_loss" in h]
    return train, during, after


LABEL_CURVES = ("accuracy", "macro_f1", "loglik_accuracy")


def curves_logged(history: list[dict]) -> list[str]:
    """What the curves show: each registered metric's headline score (rougeL for ROUGE) the run logged, and the
    label metrics, as eval_ names."""
    logged = {key.removeprefix("eval_") for h in history for key in h}
    wanted = [metric.headline for metric in registered().values()] + list(LABEL_CURVES)
    return [f"eval_{name}" for name in wanted if name in logged]


def plot_training_curves(path: Path, trainer_state: Path) -> bool:
    """Loss, eval loss and generation metrics against step, the final evaluation as its own marker; False if
    the state holds no evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = read_json(trainer_state, "the trainer state")
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InputError(f"{trainer_state} has no log_history list; give the trainer_state.json a training run wrote")
    train, evals, final = split_history(history)
    if not evals and not final:
        return False
    figure, (loss_ax, gen_ax, hundred_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_ax.plot([h["step"] for h in train], [h["loss"] for h in train], label="train loss")
    curves = [(loss_ax, "eval_loss")]
    curves += [(hundred_ax if top_of(m.removeprefix("eval_")) > 1 else gen_ax, m) for m in curves_logged(history)]
    for axis, metric in curves:
        plot_metric(axis, metric, evals, final)
    for axis, title in (
        (loss_ax, "loss"),
        (gen_ax, "generated answers and labels (0-1)"),
        (hundred_ax, "generated answers (0-100)"),
    ):
        axis.set_title(title)
        axis.set_xlabel("step")
        if axis.get_legend_handles_labels()[0]:  # an axis whose metrics the run did not log stays empty
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def plot_metric(axis, metric: str, evals: list[dict], final: list[dict]) -> None:
    """One metric's evaluations as a line, the final (best) adapter's as a star; nothing if the run never logged it."""
    if not any(metric in h for h in evals + final):  # e.g. no labels, or no text metrics
        return
    points = [h for h in evals if metric in h]
    (line,) = axis.plot([h["step"] for h in points], [h[metric] for h in points], marker="o", label=metric)
    ends = [h for h in final if metric in h]  # a star, not a line back to it
    axis.scatter(
        [h["step"] for h in ends],
        [h[metric] for h in ends],
        marker="*",
        s=140,
        color=line.get_color(),
        zorder=3,
        label=f"{metric}, final adapter" if ends else None,
    )


def write_report(
    folder: Path,
    result: dict,
    baseline: list[PredictionRow],
    candidate: list[PredictionRow],
    names: tuple[str, str],
    trainer_state: Path | None,
    shown: int,
) -> str:
    """report.md and the plots in `folder`; returns the scores table."""
    text_scored = bool(result["scores"])  # labels chosen by log-likelihood alone have no text to score
    if text_scored:
        plot_distributions(folder / "scores.png", result, names)
    if result["labels"]:
        plot_confusions(folder / "confusion.png", result, names)
    curves = trainer_state is not None and plot_training_curves(folder / "training_curves.png", trainer_state)
    table = scores_table(result, names)
    text = [
        f"# {names[1]} against {names[0]}\n",
        f"{result['num_examples']} examples, scored with metrics_utils (each score's scale beside its name). "
        f"Differences are {names[1]} minus {names[0]}; {_how_tested(result)}\n",
        "## Scores\n",
        table,
        "",
    ]
    if result["labels"]:
        text.append(_labels_section(result, baseline, names, shown))
    if text_scored:
        text += [
            f"## Where {title_of(headlines(result)[0])} moved most\n",
            _examples_section(result, baseline, candidate, names, shown),
        ]
    text += ["## Answer lengths\n", _lengths_table(result, names), "", "## Plots\n"]
    text += ["![per-example scores](scores.png)\n"] if text_scored else []
    text += ["![confusion matrices](confusion.png)\n"] if result["labels"] else []
    if curves:
        text.append(f"![training curves](training_curves.png)\n\nTraining curves from `{trainer_state}`.\n")
    (folder / "report.md").write_text("\n".join(text), encoding="utf-8")
    return table
