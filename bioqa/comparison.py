"""`python -m bioqa.comparison`: the command bioqa-compare (bioqa/cli/compare.py), kept under its first name; the
comparison itself is bioqa/evaluate/comparison.py."""

if __name__ == "__main__":
    import sys

    from bioqa.cli.compare import main

    sys.exit(main())
