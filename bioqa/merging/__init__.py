"""Merging an adapter into its base: adapter checks, in-memory and streaming merges, verification."""
