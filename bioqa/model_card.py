"""Model cards: the README.md the Hugging Face Hub shows for a model, written into every training
output folder (an adapter: `library_name: peft`) and every merged folder (`library_name:
transformers`). The YAML front matter is the Hub's (huggingface_hub writes it); the body gives the
recipe, the data with their hashes, the final evaluation with its intervals, how to load the model
and, for a merge, the verification figures."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

from bioqa.evaluate.registry import score_info
from bioqa.settings import recipe_settings

TAGS = ["bioqa-lora", "biomedical", "question-answering", "lora"]


def base_license(base_model: str) -> str | None:
    """The `license` in the front matter of a local base model's README.md, or None where unknown."""
    from huggingface_hub import ModelCard

    readme = Path(base_model) / "README.md"
    if not readme.is_file():
        return None
    try:
        return ModelCard.load(readme).data.to_dict().get("license")
    except Exception:  # a README without (valid) front matter: the licence is simply unknown
        return None


def front_matter(base_model: str, library: str, datasets: list[str], license_: str | None) -> str:
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=_hub_name(base_model),
        library_name=library,
        tags=TAGS + [library],
        datasets=datasets or None,
        license=license_,
        pipeline_tag="text-generation",
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _hub_name(model: str) -> str:
    """A Hub id as it is; a local folder by its name (the Hub's base_model field takes ids, not paths)."""
    return Path(model).name if Path(model).exists() else model


def _toolkit() -> str:
    try:
        return f"bioqa-lora {metadata.version('bioqa-lora')}"
    except metadata.PackageNotFoundError:
        return "bioqa-lora"


def scores_table(scores: dict[str, dict[str, Any]]) -> str:
    """| metric | score | 95% interval | for {name: {"score": x, "ci95": [low, high] or None}}."""
    lines = ["| metric | score | 95% interval |", "|---|---|---|"]
    for name, entry in scores.items():
        interval = entry.get("ci95")
        shown = f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "n/a"
        info = score_info(name)
        lines.append(f"| {info.title if info else name} | {entry['score']:.4g} | {shown} |")
    return "\n".join(lines)


def data_table(sources: dict[str, Any], sizes: dict[str, int], config: dict[str, Any]) -> str:
    if "dataset" in sources:
        return f"Hugging Face dataset `{sources['dataset']}`; examples per split: " + ", ".join(
            f"{split} {count}" for split, count in sizes.items()
        )
    lines = ["| split | file | SHA-256 | examples |", "|---|---|---|---|"]
    for split in dict.fromkeys([*sources, *sizes]):
        source = sources.get(split)
        where = (
            f"`{source.get('path')}` | `{source.get('sha256')}`"
            if source
            else f"split from the training file (split_ratios `{config.get('split_ratios')}`, split_seed "
            f"`{config.get('split_seed')}`) | "
        )
        lines.append(f"| {split} | {where} | {sizes.get(split, 'n/a')} |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A value as inline code in a table cell: a line break or a bar would end the cell or the row."""
    text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return "`" + text.replace("\n", "\\n").replace("|", "\\|").replace("`", "'") + "`"


def method_name(config: dict[str, Any]) -> str:
    """The adapter's method as people write it: LoRA, DoRA, IA3, LOHA, ..."""
    method = str(config.get("peft_method") or "lora").upper()
    if method == "LORA":
        return "DoRA" if config.get("use_dora") else "LoRA"
    return method


def recipe_table(config: dict[str, Any], device: dict[str, Any]) -> str:
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {_cell(config[name])} |" for name in recipe_settings() if config.get(name) is not None]
    lines.append(f"| device, precision | {device.get('device')}, {device.get('precision')} |")
    if device.get("generation_dtype"):  # evaluations generate in their own dtype
        lines.append(f"| generation dtype | {device['generation_dtype']} |")
    return "\n".join(lines)


def evaluation_of(
    rows: list[dict[str, Any]], samples: int, seed: int, labels: list[str] | None = None
) -> dict[str, Any]:
    """Corpus scores and bootstrap intervals of prediction-file rows, for the metrics the rows were scored with
    (and, with the label set, accuracy and macro-F1 of their labels)."""
    from bioqa.evaluate.predictions import rescored

    return rescored(rows, labels).summary(samples, seed)


def evaluation_section(title: str, evaluation: dict[str, Any] | None, what: str) -> str:
    """evaluation: {"num_examples": n, "scores": {metric: {"score": x, "ci95": [low, high]}}}."""
    if not evaluation or not evaluation.get("scores"):
        return ""
    return (
        f"### {title}\n\n{what} ({evaluation['num_examples']} examples; ROUGE and METEOR 0-1, BLEU 0-100, "
        f"percentile bootstrap intervals over examples):\n\n{scores_table(evaluation['scores'])}\n\n"
    )


def benchmark_section(found: dict[str, Any] | None) -> str:
    """The forgetting check (`--benchmark_tasks`): the base against this adapter on the same benchmark questions."""
    if not found:
        return ""
    return (
        "### Standard benchmarks: the base against this adapter\n\n"
        f"lm-evaluation-harness ({', '.join(found['tasks'])}), accuracy by log-likelihood of each option on the same "
        "questions; the difference's paired bootstrap 95% "
        f"interval and McNemar's exact test (`{found['folder']}/comparison/report.md`):\n\n{found['table']}\n\n"
    )


def adapter_card(
    folder: str,
    config: dict[str, Any],
    manifest: dict[str, Any],
    validation: dict[str, Any] | None,
    test: dict[str, Any] | None = None,
) -> str:
    """The card of a training output folder: an adapter of `config["model_name_or_path"]`."""
    base = config["model_name_or_path"]
    sources = manifest.get("data_sources", {})  # a Hub dataset; a local folder given as --dataset_name is files
    datasets = [sources["dataset"]] if sources.get("dataset") else []
    evaluation = evaluation_section(
        "Validation", validation, "Generated answers to the validation questions the evaluation during training used"
    ) + evaluation_section("Test", test, "Generated answers to the test split (`--do_predict`)")
    evaluation += benchmark_section(manifest.get("benchmark"))
    return (
        front_matter(base, "peft", datasets, base_license(base))
        + f"\n# {Path(folder).name}\n\nA {method_name(config)} adapter for `{base}`, fine-tuned for biomedical "
        f"question answering with {_toolkit()} (`load_models.py`). Its files: the adapter, the tokenizer, "
        "`run_config.yaml` (every option; reusable with `--config`), `run_manifest.json` (versions, data hashes, "
        "timings), `metrics.json`."
        f"\n\n## Recipe\n\n{recipe_table(config, manifest.get('device', {}))}\n\n"
        f"## Data\n\n{data_table(manifest.get('data_sources', {}), manifest.get('split_sizes', {}), config)}\n\n"
        f"## Evaluation\n\n{evaluation or 'No evaluation was run.'}"
        f"## How to load\n\n```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import "
        f'AutoTokenizer\n\nmodel = AutoPeftModelForCausalLM.from_pretrained("{folder}")  # or its Hub id\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}")\n```\n\n'
        f"A stand-alone model: `python merge_base_and_adapt_ft_models.py --adapter_dir {folder} "
        "--output_dir merged`.\n"
    )


def merged_card(folder: str, report: dict[str, Any], adapter_card_text: str | None) -> str:
    """The card of a merged folder: the adapter's card data (datasets, licence), the merge and its verification."""
    base, adapter = report["base_model"], report["adapter"]
    datasets = _card_data(adapter_card_text).get("datasets") or []
    check = report.get("verification", {})
    figures = "\n".join(f"| {key} | {value} |" for key, value in check.items() if key not in ("tolerance",))
    return (
        front_matter(base, "transformers", datasets, base_license(base))
        + f"\n# {Path(folder).name}\n\n`{base}` with the adapter `{adapter['path']}` (SHA-256 of its "
        f"weights `{adapter.get('sha256')}`) merged into its weights by {_toolkit()} "
        f"(`merge_base_and_adapt_ft_models.py`, {report.get('mode')}, {report.get('dtype')}).\n\n"
        f"## Verification\n\n| check | value |\n|---|---|\n{figures or '| verification | skipped |'}\n\n"
        f"Tolerance: `{check.get('tolerance')}`. `merge_report.json` records the size and SHA-256 of every file."
        f"\n\n{_adapter_sections(adapter_card_text)}## How to load\n\n```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{folder}")  # or its Hub id\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{folder}")\n```\n'
    )


def _adapter_sections(text: str | None) -> str:
    """The recipe, data and evaluation of the adapter's own card, one heading level down."""
    if not text or "## Recipe" not in text or "## How to load" not in text:
        return ""
    body = text[text.index("## Recipe") : text.index("## How to load")]
    return "## The adapter\n\nFrom the adapter's own card:\n\n" + re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)


def _card_data(text: str | None) -> dict[str, Any]:
    from huggingface_hub import ModelCard

    if not text:
        return {}
    try:
        return ModelCard(text).data.to_dict()
    except Exception:  # a card another tool wrote, without valid front matter: nothing to carry over
        return {}
