"""`python -m bioqa.score`: the command bioqa-score (bioqa/cli/score.py), kept under its first name."""

if __name__ == "__main__":
    import sys

    from bioqa.cli.score import main

    sys.exit(main())
