"""Generation: batched answers, log-likelihood label choice, post-processing, device speed-ups."""
