"""postprocess_text on what generation really returns, and the Trainer compute_metrics factory."""

from types import SimpleNamespace

import numpy as np
import pytest

import metrics_utils
from metrics_utils import postprocess_text


@pytest.mark.parametrize(
    "raw, kwargs, expected",
    [
        ("  IL-6 is a cytokine.  ", {}, "IL-6 is a cytokine."),
        ("IL-6 is a cytokine.<|im_end|>", {}, "IL-6 is a cytokine."),
        ("<s> Insulin lowers glucose.</s><pad><pad>", {}, "Insulin lowers glucose."),
        ("Answer: yes.\r\nBecause.\r\n\r\n\r\n\r\nDone.", {}, "Answer: yes.\nBecause.\n\nDone."),
        ("Line one   \nLine two\t\n", {}, "Line one\nLine two"),
        ("Yes.\nQuestion: what next?", {"stop_strings": ["\nQuestion:"]}, "Yes."),
        ("Yes.<|im_end|>\n<|im_start|>user\nMore", {"stop_strings": ["<|im_end|>"]}, "Yes."),
        ("A. ### B ### C", {"stop_strings": ["###", "B"]}, "A."),
        ("Question: What is IL-6?\nAnswer: A cytokine.", {"prompt": "Question: What is IL-6?\nAnswer:"}, "A cytokine."),
        (
            "user\nWhat is IL-6?\nassistant\nA cytokine.",
            {"prompt": "<|im_start|>user\nWhat is IL-6?<|im_end|>\n<|im_start|>assistant\n"},
            "A cytokine.",
        ),
        ("A cytokine.", {"prompt": "What is IL-6?"}, "A cytokine."),
        ("[EOS]x[EOS]", {"special_tokens": ["[EOS]"]}, "x"),
        ("", {}, ""),
    ],
)
def test_postprocess_text(raw, kwargs, expected):
    assert postprocess_text(raw, **kwargs) == expected


class WordTokenizer:
    """A minimal tokenizer with the two methods the factory uses: ids index a word list."""

    def __init__(self, words):
        self.vocab = ["<pad>", "</s>"] + words
        self.pad_token_id, self.eos_token_id = 0, 1

    def batch_decode(self, rows, skip_special_tokens=False):
        special = {0, 1} if skip_special_tokens else set()
        return [" ".join(self.vocab[i] for i in row if i not in special) for row in rows]


def test_trainer_compute_metrics_decodes_ids_and_ignores_label_padding():
    tokenizer = WordTokenizer(["insulin", "lowers", "blood", "glucose", "raises"])
    predictions = np.array([[2, 3, 4, 5, 1, 0], [2, 6, 4, 5, -100, -100]])
    labels = np.array([[-100, 2, 3, 4, 5, 1], [-100, -100, 2, 3, 4, 5]])
    compute = metrics_utils.trainer_compute_metrics(tokenizer, metrics=("rouge", "bleu"))
    result = compute(SimpleNamespace(predictions=predictions, label_ids=labels))
    # decoded: "insulin lowers blood glucose" (the reference itself) and "insulin raises blood glucose" (3 of 4 words,
    # longest common subsequence 3): ROUGE-1 and ROUGE-L F (1 + 0.75) / 2; corpus BLEU from the summed n-gram
    # matches 7/8, 4/6, 2/4, 1/2 with no brevity penalty, by hand
    assert result["rouge1"] == pytest.approx(0.875) and result["rougeL"] == pytest.approx(0.875)
    assert result["bleu"] == pytest.approx(100 * (7 / 8 * 4 / 6 * 2 / 4 * 1 / 2) ** 0.25)
    assert result["gen_len"] == pytest.approx((5 + 4) / 2)
    assert all(isinstance(value, (int, float)) for value in result.values())


def test_trainer_compute_metrics_accepts_tuple_predictions_and_refuses_logits():
    tokenizer = WordTokenizer(["a", "b", "c", "d"])
    compute = metrics_utils.trainer_compute_metrics(tokenizer, metrics=("rouge",))
    ids = np.array([[2, 3, 4, 5]])
    assert compute(SimpleNamespace(predictions=(ids, None), label_ids=ids))["rouge1"] == 1.0
    with pytest.raises(ValueError, match="predict_with_generate"):
        compute(SimpleNamespace(predictions=np.zeros((1, 4, 6), dtype=np.float32), label_ids=ids))
