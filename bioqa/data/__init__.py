"""Question-answer data: sources (files, Hub), splits, ids and the leak check, prompts, token ids."""
