"""`make bench-gpu` needs no ../shared (users do not have it): its examples come from the bundled data/bioqa,
each with the answers of ten others as its context, PubMedQA's shape."""

import sys

from helpers import ROOT


def test_the_gpu_benchmark_reads_only_the_bundled_data(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_train

    monkeypatch.setattr(bench_train, "SHARED", ROOT / "no-such-folder")  # as on a user's clone
    sys.modules.pop("bench_gpu", None)
    from bench_gpu import long_examples

    examples = long_examples(300)  # more than data/bioqa's 240 records: they come round again with new ids
    assert len(examples) == 300 and len({e["id"] for e in examples}) == 300
    words = [len(e["context"].split()) for e in examples]
    assert 200 <= sum(words) / len(words) <= 300 and all(e["question"] and e["answer"] for e in examples)
