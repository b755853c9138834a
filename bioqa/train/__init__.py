"""Training: base model and adapter loading, the answer-only loss, sampler, Trainer, evaluator, resume."""
