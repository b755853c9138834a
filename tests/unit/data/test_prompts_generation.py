"""Prompts, answer-only labels, context-first truncation, and batched greedy generation."""

import pytest

from bioqa.data import prompts
from bioqa.errors import InputError
from bioqa.generate.generation import AnswerNoRepeatNGram, GenerationSettings, generate_answers, generate_token_ids
from helpers import prompt_args
from tiny_models import build_model, qa_rows

EXAMPLE = {
    "id": "1",
    "question": "What does insulin do?",
    "context": "Insulin is a hormone made by beta cells.",
    "answer": "Insulin lowers blood glucose.",
}


def test_chat_template_prompt_and_answer_only_labels(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    assert fmt.chat
    text = prompts.prompt_text(tokenizer, fmt, EXAMPLE["question"], EXAMPLE["context"])
    assert text == (
        "<|im_start|>system\nYou are a biomedical expert.<|im_end|>\n<|im_start|>user\n"
        "Context: Insulin is a hormone made by beta cells.\nQuestion: What does insulin do?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    features, truncated = prompts.encode_for_training(tokenizer, fmt, EXAMPLE, 512)
    prompt = prompts.prompt_ids(tokenizer, fmt, EXAMPLE["question"], EXAMPLE["context"])
    answer = tokenizer(EXAMPLE["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert not truncated
    assert features["input_ids"] == prompt + answer  # the generation prompt is exactly the training prefix
    assert features["labels"] == [-100] * len(prompt) + answer
    assert features["labels"][-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_plain_template_when_no_chat_template(tiny_plain_model_dir):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_plain_model_dir)
    fmt = prompts.prompt_format(plain, prompt_args())
    assert not fmt.chat
    assert prompts.prompt_text(plain, fmt, "Q?", "") == "You are a biomedical expert.\n\nQuestion: Q?\nAnswer:"
    features, _ = prompts.encode_for_training(plain, fmt, {**EXAMPLE, "context": ""}, 512)
    answer = plain(" " + EXAMPLE["answer"], add_special_tokens=False)["input_ids"] + [plain.eos_token_id]
    assert features["input_ids"][-len(answer) :] == answer
    with pytest.raises(InputError, match="no chat template"):
        prompts.prompt_format(plain, prompt_args(use_chat_template="yes"))


def test_bad_template_is_a_usage_error(tokenizer):
    with pytest.raises(InputError, match="^question_template "):
        prompts.prompt_format(tokenizer, prompt_args(question_template="Q: {query}"))


def test_long_example_loses_context_never_answer(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    long = {**EXAMPLE, "context": " ".join(["Insulin is a hormone made by beta cells."] * 40)}
    full, _ = prompts.encode_for_training(tokenizer, fmt, long, 10_000)
    limit = len(full["input_ids"]) // 2
    cut, truncated = prompts.encode_for_training(tokenizer, fmt, long, limit)
    answer = [t for t in full["labels"] if t != -100]
    assert truncated and len(cut["input_ids"]) <= limit
    assert [t for t in cut["labels"] if t != -100] == answer  # the whole answer and EOS survive
    assert len(cut["input_ids"]) > limit - 40  # and the context is cut no more than needed


def test_example_that_cannot_fit_is_dropped_and_counted(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    limit = len(prompts.encode_for_training(tokenizer, fmt, EXAMPLE, 10_000)[0]["input_ids"]) - 3
    features, counts = prompts.encode_dataset(tokenizer, fmt, [EXAMPLE, {**EXAMPLE, "answer": "word " * 300}], limit)
    assert len(features) == 1 and counts == {"truncated": 1, "dropped": 1, "shortened": 0, "dropped_exchanges": 0}


def test_batched_generation_equals_one_by_one_in_input_order(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    rows = qa_rows(14)
    ids = [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in rows]
    assert len({len(i) for i in ids}) > 3  # prompts of different lengths: padding is exercised
    model = build_model(tokenizer, seed=3)
    batched = generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=12, batch_size=5))
    single = generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=12, batch_size=1))
    assert batched == single
    assert all(len(x) > 0 for x in batched)
    assert tokenizer.padding_side == "right" and model.training  # both restored as found
    reversed_out = generate_token_ids(model, tokenizer, ids[::-1], GenerationSettings(max_new_tokens=12, batch_size=5))
    assert reversed_out == batched[::-1]


def repeated_ngrams(ids, n):
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) - len(set(grams))


def test_ngram_ban_ignores_the_prompt_but_not_the_answer():
    import torch
    from transformers import NoRepeatNGramLogitsProcessor

    prompt = [5, 6, 7, 1]
    scores = torch.zeros(1, 10)
    quoting = torch.tensor([prompt + [5, 6]])  # the answer starts quoting the prompt's trigram 5 6 7
    assert torch.isinf(NoRepeatNGramLogitsProcessor(3)(quoting, scores)[0, 7])  # transformers' own bans the quote
    assert not torch.isinf(AnswerNoRepeatNGram(3, len(prompt))(quoting, scores)).any()
    repeating = torch.tensor([prompt + [8, 9, 3, 8, 9]])  # the answer's own trigram 8 9 3 may not come twice
    banned = torch.isinf(AnswerNoRepeatNGram(3, len(prompt))(repeating, scores))[0]
    assert banned.nonzero().flatten().tolist() == [3]


@pytest.mark.parametrize("guard", [dict(no_repeat_ngram_size=2), dict(repetition_penalty=1.5)])
def test_repetition_guards_hold_in_padded_batches(tokenizer, guard):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    ids = [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(8)]
    model = build_model(tokenizer, seed=3)
    free = generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=24, batch_size=8))
    batched = generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=24, batch_size=8, **guard))
    single = generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=24, batch_size=1, **guard))
    assert batched == single  # the prompt is skipped correctly whatever the row's padding
    assert sum(repeated_ngrams(a, 2) for a in free) > sum(repeated_ngrams(a, 2) for a in batched)
    if "no_repeat_ngram_size" in guard:
        assert all(repeated_ngrams(a, 2) == 0 for a in batched)


def test_a_models_own_prompt_counting_guards_are_overridden(tokenizer):
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    ids = [prompts.prompt_ids(tokenizer, fmt, r["question"], r["context"]) for r in qa_rows(6)]
    settings = GenerationSettings(max_new_tokens=24, batch_size=6)
    plain = generate_token_ids(build_model(tokenizer, seed=3), tokenizer, ids, settings)
    shipped = build_model(tokenizer, seed=3)
    shipped.generation_config.repetition_penalty = 3.0  # as some checkpoints ship it
    shipped.generation_config.no_repeat_ngram_size = 2
    assert generate_token_ids(shipped, tokenizer, ids, settings) == plain


def test_generation_stops_at_eos_and_decodes_clean_text(tokenizer):
    import torch

    model = build_model(tokenizer, seed=1, tie=False)  # untied: the output head can change alone
    eos = tokenizer.eos_token_id
    with torch.no_grad():  # make EOS the only likely token: every answer ends at once
        model.lm_head.weight.zero_()
        model.lm_head.weight[eos] = 1.0
        model.model.norm.weight.fill_(5.0)
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    ids = [prompts.prompt_ids(tokenizer, fmt, "Q?", "")]
    assert generate_token_ids(model, tokenizer, ids, GenerationSettings(max_new_tokens=5)) == [[]]
    assert generate_answers(model, tokenizer, ids, GenerationSettings(max_new_tokens=5)) == [""]


def test_answer_only_logits_give_the_models_own_loss(tokenizer):
    import torch

    from bioqa.train.loss import AnswerOnlyCollator, answer_only_loss

    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_dataset(tokenizer, fmt, qa_rows(6), 512)
    batch = AnswerOnlyCollator(tokenizer)(features)  # right-padded: no attention mask (bioqa.train.loss)
    masked = AnswerOnlyCollator(tokenizer, keep_attention_mask=True)(features)
    keep = batch.pop("logits_to_keep")
    labels = batch["labels"]
    assert len(keep) < labels.shape[1] - 1  # the prompt's logits are skipped
    model = build_model(tokenizer, seed=2)
    reference = model(**{k: v for k, v in masked.items() if k != "logits_to_keep"}).loss
    outputs = model(input_ids=batch["input_ids"], logits_to_keep=keep)
    assert outputs.logits.shape[1] == len(keep)
    torch.testing.assert_close(answer_only_loss(outputs, labels), reference)
    items = (labels[:, 1:] != -100).sum()
    torch.testing.assert_close(answer_only_loss(outputs, labels, num_items_in_batch=items * 2), reference / 2)


def test_length_grouped_batches_cut_padding_for_small_datasets():
    import random as stdlib_random

    from bioqa.train.sampler import LengthGroupedBatches

    lengths = [stdlib_random.Random(i).randint(50, 500) for i in range(40)]

    def padding(order, size=8):
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        total = sum(max(lengths[j] for j in b) * len(b) for b in batches)
        return 1 - sum(lengths) / total

    sampler = LengthGroupedBatches(lengths, 8, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(40))  # each epoch visits every example once
    assert first != second and first == list(LengthGroupedBatches(lengths, 8, seed=0))  # seeded, new per epoch
    assert max(lengths) in [lengths[i] for i in first[:8]]  # the longest batch comes first
    assert padding(first) < 0.15 and padding(first) < padding(list(range(40))) / 2  # sorted: ~12.5% vs 35%


@pytest.mark.parametrize("style", ["gemma", "llama3"])
def test_chat_targets_end_with_the_templates_end_of_turn_not_the_eos(style):
    from bioqa.data.prompts import encode_for_training, prompt_format
    from bioqa.generate.generation import stop_token_ids
    from bioqa.settings import PromptArguments
    from tiny_models import TEMPLATE_STYLES, build_styled_tokenizer

    tokenizer = build_styled_tokenizer(style)
    turn_end = tokenizer.convert_tokens_to_ids(TEMPLATE_STYLES[style]["turn_end"])
    assert turn_end != tokenizer.eos_token_id
    fmt = prompt_format(tokenizer, PromptArguments())
    example = {"question": "What does insulin do?", "context": "", "answer": "Insulin lowers blood glucose."}
    features, _ = encode_for_training(tokenizer, fmt, example, 512)
    answer = [t for t in features["labels"] if t != -100]
    assert answer[-1] == turn_end and tokenizer.eos_token_id not in answer
    assert tokenizer.decode(answer, skip_special_tokens=True) == example["answer"]
    # prompt + completion is the template's own rendering of the conversation (system merged into the user turn
    # where the template has no system role), up to the end of the assistant's turn
    messages = [
        {"role": "user", "content": f"{fmt.system_prompt}\n\nQuestion: {example['question']}"},
        {"role": "assistant", "content": example["answer"]},
    ]
    if style == "llama3":
        messages = [
            {"role": "system", "content": fmt.system_prompt},
            {"role": "user", "content": f"Question: {example['question']}"},
            messages[1],
        ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
    assert tokenizer.decode(features["input_ids"]) == rendered
    assert turn_end in stop_token_ids(None, tokenizer)  # generation stops where training taught the model to


def test_text_that_cannot_fit_is_cut_before_tokenising_and_the_result_is_unchanged(tokenizer):
    from dataclasses import replace

    from bioqa.data.prompts import encode_for_training, prompt_format
    from bioqa.settings import PromptArguments

    class Spy:  # the tokenizer, recording the longest text it was asked to tokenise
        longest = 0

        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, text, **kwargs):
            Spy.longest = max(Spy.longest, len(text))
            return tokenizer(text, **kwargs)

    fmt = prompt_format(tokenizer, PromptArguments())
    context = "Pharmacology notes: insulin lowers blood glucose. " * 4000  # 200,000 characters
    example = {"question": "What does insulin do?", "context": context, "answer": "It lowers blood glucose."}
    cut, truncated = encode_for_training(Spy(), fmt, example, 128)
    assert truncated and Spy.longest <= fmt.char_budget(128) + 1000  # + the prompt around the context
    uncut, _ = encode_for_training(
        tokenizer, replace(fmt, max_token_chars=0), {**example, "context": context[:20_000]}, 128
    )
    assert cut == uncut
    huge_answer = {**example, "answer": "glucose " * 100_000}
    assert encode_for_training(Spy(), fmt, huge_answer, 128) == (None, False) and Spy.longest < 800_000
