# %% [markdown]
# # bioqa from a notebook: zero-shot, fine-tune, predict, compare, merge
#
# `make demo` runs these steps as shell commands; here they are Python calls, with the same files on disk.
# Open this file in VS Code or Jupyter (with jupytext) and run it cell by cell, or run it whole:
# `python examples/notebook.py` (about 2 minutes on two CPU cores, offline once `make setup model` has run).
# Set `BIOQA_NOTEBOOK_CONFIG` to another recipe YAML and `BIOQA_NOTEBOOK_OUTPUT` to another folder.

# %%
import logging
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # run as a script: draw into a file, open no window
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

import bioqa

logging.basicConfig(level=logging.INFO, format="[bioqa] %(message)s")  # the toolkit's progress lines

CONFIG = os.environ.get("BIOQA_NOTEBOOK_CONFIG", "configs/demo-smollm2-cpu.yaml")
OUT = Path(os.environ.get("BIOQA_NOTEBOOK_OUTPUT", "outputs/notebook"))

# The demo's recipe; every setting can be changed by name (print(bioqa.Recipe.help()) lists them).
recipe = bioqa.Recipe.from_yaml(CONFIG, overwrite_output_dir=True)
print(recipe.adapter.lora_r, recipe.training.learning_rate, recipe.data.train_file)

# %% [markdown]
# ## 1. Zero-shot: the base model answers the test questions
# The same recipe with nothing trained, so both systems are asked alike.

# %%
zero_shot = bioqa.predict(recipe.replace(output_dir=str(OUT / "zero-shot")))
print(zero_shot)

# %% [markdown]
# ## 2. Fine-tune a LoRA adapter, then answer the same questions with it

# %%
run = bioqa.finetune(recipe.replace(output_dir=str(OUT / "fine-tuned"), do_predict=True))
print(run)
print("best checkpoint:", run.best_checkpoint)  # None unless the recipe sets metric_for_best_model
print(run.predictions)

# %% [markdown]
# ## 3. Compare the two systems, question by question
# Paired bootstrap intervals of each difference; report.md and plots in the output folder.

# %%
comparison = bioqa.compare(zero_shot, run.predictions, OUT / "report", overwrite=True)
print(comparison)  # the scores table
rouge = comparison.metrics["rougeL"]
if rouge["p_value"] is None:  # fewer than 10 questions (bioqa.evaluate.bootstrap.MIN_EXAMPLES): no interval
    print(f"ROUGE-L {rouge['difference']:+.3f} (too few questions for an interval)")
else:
    interval = f"[{rouge['ci_low']:+.3f}, {rouge['ci_high']:+.3f}]"
    print(f"ROUGE-L {rouge['difference']:+.3f} {interval}, p = {rouge['p_value']:.3g}")

# %% [markdown]
# ## 4. A plot: each system's scores with their 95% intervals

# %%
names = ["rouge1", "rouge2", "rougeL", "meteor"]
figure, axes = plt.subplots(figsize=(6, 3))
for offset, (label, predictions) in zip((-0.2, 0.2), (("zero-shot", zero_shot), ("fine-tuned", run.predictions))):
    scores = [predictions.scores[name] for name in names]
    values = [s["score"] for s in scores]
    # no interval below 10 questions (bioqa.evaluate.bootstrap.MIN_EXAMPLES): bars without whiskers then
    intervals = [s["ci95"] for s in scores]
    whiskers = (
        None
        if None in intervals
        else [[v - lo for v, (lo, _) in zip(values, intervals)], [hi - v for v, (_, hi) in zip(values, intervals)]]
    )
    axes.bar([i + offset for i in range(len(names))], values, width=0.4, yerr=whiskers, capsize=3, label=label)
axes.set_xticks(range(len(names)), names)
axes.set_ylabel("score (0-1)")
axes.legend()
figure.tight_layout()
figure.savefig(OUT / "scores.png", dpi=120)
plt.show()

# %% [markdown]
# ## 5. Merge the adapter into its base, verified from disk
# The merged folder loads with plain `AutoModelForCausalLM.from_pretrained`.

# %%
report = bioqa.merge(run, OUT / "merged", overwrite=True)
print(report.summary())
