"""Score a handful of generated biomedical answers with metrics_utils and print a results table.

    python examples/metrics_demo.py

metrics_utils on its own, as in a notebook: corpus ROUGE / BLEU / METEOR with 95% bootstrap
intervals and the per-example scores an error analysis starts from. (`make setup` installs the
package, so `import metrics_utils` works from any folder.)
"""

import sys

import metrics_utils

QUESTIONS = [
    (
        "What does IL-6 do in the acute-phase response?",
        "IL-6 stimulates the liver to produce acute-phase proteins such as C-reactive protein.",
        "IL-6 drives hepatocytes to make acute-phase proteins, including C-reactive protein (CRP).",
    ),
    (
        "How do beta-blockers lower blood pressure?",
        "β-blockers reduce heart rate and cardiac output.<|im_end|>",
        "Beta-blockers lower blood pressure by reducing heart rate, cardiac output and renin release.",
    ),
    (
        "What is the usual starting dose of metformin?",
        "Metformin is usually started at 500 mg once or twice daily with meals.",
        "Metformin is commonly started at 500 mg once or twice a day with food to limit GI upset.",
    ),
    (
        "Which organism causes tuberculosis?",
        "Tuberculosis is caused by Mycobacterium tuberculosis.",
        "Tuberculosis is caused by the bacterium Mycobacterium tuberculosis.",
    ),
    (
        "What does a p-value below 0.05 mean?",
        "It means the result is clinically important.",
        "A p < 0.05 means data this extreme would occur less than 5% of the time if the null hypothesis were true.",
    ),
]


def main() -> int:
    predictions = [metrics_utils.postprocess_text(pred) for _, pred, _ in QUESTIONS]
    references = [ref for _, _, ref in QUESTIONS]
    scores = metrics_utils.score_predictions(predictions, references)  # score once, use three ways
    corpus = scores.corpus()
    intervals = metrics_utils.bootstrap_intervals(scores, samples=1000, seed=0)
    print(f"{len(predictions)} answers; ROUGE and METEOR on 0-1, BLEU on 0-100; 95% bootstrap intervals\n")
    print("| metric | score | 95% CI |\n|---|---|---|")
    for name, (low, high) in intervals.items():
        print(f"| {name} | {corpus[name]:.4f} | [{low:.4f}, {high:.4f}] |")
    print(f"\nBLEU signature: {corpus['bleu_signature']}\n")
    print("| question | rougeL | bleu | meteor |\n|---|---|---|---|")
    for (question, _, _), row in zip(QUESTIONS, scores.rows()):
        print(f"| {question} | {row['rougeL']:.3f} | {row['bleu']:.1f} | {row['meteor']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
