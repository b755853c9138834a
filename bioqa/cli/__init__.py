"""The command-line layer: each module is one command (`main(argv) -> int`), installed as a console script."""
