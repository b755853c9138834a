"""`python -m bioqa.score`: the command bioqa-score (bioqa/cli/score.py), kept under its first name.

Imported (`import bioqa.score`, as documentation tools do), this module becomes the package's attribute `score` in
place of the function `bioqa.score`; calling the module therefore scores, so `bioqa.score(...)` works either way.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from bioqa.api import score

        return score(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from bioqa.cli.score import main

    sys.exit(main())
