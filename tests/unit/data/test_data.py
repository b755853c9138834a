"""bioqa.data.splits: every file format, field mapping, split, drop, leak and bad file; held-out folds."""

import hashlib
import importlib
import json
import re
from types import SimpleNamespace

import pytest

from bioqa.data import sources
from bioqa.data import splits as data
from bioqa.errors import InputError
from bioqa.settings import DataArguments
from helpers import ROOT, SHARED_DATA

ROWS = [
    {"id": "a", "question": "What does insulin do?", "context": "Notes.", "answer": "It lowers glucose."},
    {"id": "b", "question": "What does aspirin do?", "context": "", "answer": "It inhibits COX."},
]


def args(**overrides):
    base = dict(
        dataset_name=None,
        dataset_config_name=None,
        train_file=None,
        validation_file=None,
        test_file=None,
        data_format="auto",
        question_field="question",
        context_field=None,
        answer_field="answer",
        id_field="id",
        field_separator="\n",
        split_ratios=[0.8, 0.1, 0.1],
        split_seed=42,
        max_train_samples=None,
        max_eval_samples=None,
        max_predict_samples=None,
        label_field=None,
        labels=None,
        options_field=None,
        target="answer",
    )
    return DataArguments(**{**base, **overrides})  # the real settings: a new one has its default here too


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, text",
    [
        ("d.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS)),
        ("d.json", json.dumps(ROWS)),
        ("d.json", json.dumps({"data": ROWS})),
        ("d.json", json.dumps({r["id"]: {k: v for k, v in r.items() if k != "id"} for r in ROWS})),
        (
            "d.csv",
            "id,question,context,answer\na,What does insulin do?,Notes.,It lowers glucose.\n"
            "b,What does aspirin do?,,It inhibits COX.\n",
        ),
    ],
)
def test_every_text_format_gives_the_same_examples(tmp_path, name, text):
    records = sources.read_records(write(tmp_path / name, text))
    examples, empty = data.to_examples(records, data.FieldMap(), "train", name)
    assert empty == 0
    assert examples == ROWS


def test_parquet(tmp_path):
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    assert sources.read_records(tmp_path / "d.parquet") == ROWS


def test_nested_fields_and_list_context_pubmedqa_hub_layout():
    record = {
        "pubid": 1,
        "question": "Q?",
        "context": {"contexts": ["Part one.", "Part two."], "labels": ["A", "B"]},
        "long_answer": "Long answer.",
    }
    fields = data.FieldMap(question="question", answer="long_answer", context="context.contexts", id="pubid")
    [example], _ = data.to_examples([record], fields, "train", "hub")
    assert example == {"id": "1", "question": "Q?", "context": "Part one.\nPart two.", "answer": "Long answer."}


def test_raw_pubmedqa_file_keyed_by_pmid(tmp_path):
    raw = {
        "123": {"QUESTION": "Q1?", "CONTEXTS": ["a", "b"], "LABELS": ["X", "Y"], "LONG_ANSWER": "A1."},
        "456": {"QUESTION": "Q2?", "CONTEXTS": ["c"], "LABELS": ["X"], "LONG_ANSWER": "A2."},
    }
    records = sources.read_records(write(tmp_path / "ori_pqal.json", json.dumps(raw)))
    fields = data.FieldMap(question="QUESTION", answer="LONG_ANSWER", context="CONTEXTS")
    examples, _ = data.to_examples(records, fields, "train", "ori_pqal.json")
    assert [e["id"] for e in examples] == ["123", "456"]
    assert examples[0]["context"] == "a\nb"


@pytest.mark.skipif(not (SHARED_DATA / "pubmedqa" / "ori_pqal_train.json").exists(), reason="needs ../shared/data")
def test_real_upstream_pubmedqa_and_medquad_files():
    pubmedqa = sources.read_records(SHARED_DATA / "pubmedqa" / "ori_pqal_train.json")
    fields = data.FieldMap(question="QUESTION", answer="LONG_ANSWER", context="CONTEXTS")
    examples, empty = data.to_examples(pubmedqa, fields, "train", "ori_pqal_train.json")
    assert len(examples) + empty == 500 and examples[0]["id"].isdigit() and "\n" in examples[0]["context"]
    medquad = sources.read_records(SHARED_DATA / "medquad" / "medquad_small.jsonl")
    examples, empty = data.to_examples(medquad, data.FieldMap(), "train", "medquad_small.jsonl")
    assert len(examples) + empty == 1000 and examples[0]["id"].startswith("medquad-")


def test_empty_answers_are_dropped_and_counted():
    rows = ROWS + [{"id": "c", "question": "Q?", "answer": "  "}, {"id": "d", "question": "Q?", "answer": ["", " "]}]
    examples, empty = data.to_examples(rows, data.FieldMap(), "train", "x")
    assert len(examples) == 2 and empty == 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("answer", None),
        ("answer", True),
        ("answer", 3.5),
        ("question", 7),
        ("answer", {"text": "a"}),
        ("question", ["a", 1]),
        ("context", 5),
    ],
)
def test_a_field_that_is_not_text_is_an_error_naming_file_row_and_field(field, value):
    rows = ROWS + [{"id": "c", "question": "Q?", "answer": "A.", "context": "C.", field: value}]
    with pytest.raises(InputError, match=rf"x record 3: field '{field}' is .*, not a text"):
        data.to_examples(rows, data.FieldMap(), "train", "x")


def test_a_null_context_means_no_context_and_a_list_of_texts_is_joined():
    rows = [{"question": "Q?", "answer": ["A.", "B."], "context": None}]
    examples, _ = data.to_examples(rows, data.FieldMap(), "train", "x")
    assert examples[0]["context"] == "" and examples[0]["answer"] == "A.\nB."


def test_dotted_id_field_is_honoured_and_duplicate_ids_are_refused():
    rows = [
        {"meta": {"pmid": 101}, "question": "Q1?", "answer": "A."},
        {"meta": {"pmid": "102"}, "question": "Q2?", "answer": "B."},
    ]
    examples, _ = data.to_examples(rows, data.FieldMap(id="meta.pmid"), "test", "x")
    assert [e["id"] for e in examples] == ["101", "102"]
    with pytest.raises(InputError, match=r"x has the id '101' twice \(records 1 and 3\)"):
        data.to_examples(
            rows + [{"meta": {"pmid": 101}, "question": "Q3?", "answer": "C."}],
            data.FieldMap(id="meta.pmid"),
            "test",
            "x",
        )
    with pytest.raises(InputError, match="not a text or a whole number"):
        data.to_examples([{"id": [1], "question": "Q?", "answer": "A."}], data.FieldMap(), "test", "x")


def test_csv_field_spanning_lines_and_unusual_line_separators_survive(tmp_path):
    text = 'question,answer\n"What does insulin do?","It lowers\nglucose.\u2028Second\u0085part"\r\nQ2?,A2\n'
    records = sources.read_records(write(tmp_path / "q.csv", "\ufeff" + text))
    assert records[0]["answer"] == "It lowers\nglucose.\u2028Second\u0085part" and records[1]["question"] == "Q2?"
    line = json.dumps({"question": "Q\u2028?", "answer": "A\u2029B\x85C"}, ensure_ascii=False)
    assert (
        sources.read_records(write(tmp_path / "q.jsonl", "\ufeff" + line + "\r\n" + line))[1]["answer"]
        == "A\u2029B\x85C"
    )


def test_one_file_is_split_by_seed_and_ratios_and_leaks_are_counted(tmp_path):
    rows = [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(90)]
    # ten questions twice, in other case: each a leak where the split puts its two copies apart
    rows += [{"question": f"question {i}?", "answer": "dup"} for i in range(0, 100, 10)]
    rows += [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(90, 91)]
    path = write(tmp_path / "all.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    first = data.load_splits(args(train_file=str(path)))
    again = data.load_splits(args(train_file=str(path)))
    assert first.sizes() == {"train": 81, "validation": 10, "test": 10}
    assert first.examples == again.examples
    other = data.load_splits(args(train_file=str(path), split_seed=1))
    assert other.examples["test"] != first.examples["test"]
    ids = [e["id"] for split in first.examples.values() for e in split]
    assert len(ids) == len(set(ids)) == 101
    splits_of: dict[str, set[str]] = {}
    for name, split in first.examples.items():
        for example in split:
            splits_of.setdefault(example["question"].lower(), set()).add(name)
    apart = sum(len(names) > 1 for names in splits_of.values())
    assert apart >= 1 and first.leaked_questions == apart
    assert first.sources["train"]["sha256"] and first.dropped_empty == {"train": 0, "validation": 0, "test": 0}


def test_given_validation_file_is_used_and_test_is_cut_from_train(tmp_path):
    train = write(
        tmp_path / "t.jsonl", "".join(json.dumps({"question": f"Q{i}", "answer": "A"}) + "\n" for i in range(50))
    )
    valid = write(tmp_path / "v.jsonl", json.dumps({"question": "V", "answer": "A"}) + "\n")
    splits = data.load_splits(args(train_file=str(train), validation_file=str(valid), split_ratios=[0.8, 0.1, 0.1]))
    assert splits.sizes() == {"train": 45, "validation": 1, "test": 5}
    limited = data.load_splits(args(train_file=str(train), validation_file=str(valid), max_train_samples=7))
    assert len(limited.examples["train"]) == 7


def test_leaked_question_is_reported():
    splits = {"train": [{"question": "What is IL-6?"}], "validation": [{"question": "what is  IL-6? "}], "test": []}
    assert data.count_leaked_questions(splits) == 1


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("bad.jsonl", '{"question": "q", "answer": "a"}\n{"question": "q", "answer": \n', "line 2 is not valid JSON"),
        ("bad.jsonl", '["a list"]\n', "line 1 is a JSON list"),
        ("bad.json", '{"question": ', "is not valid JSON"),
        ("bad.json", "[1, 2]", "holds no records"),
        ("data.txt", "x", "cannot tell the format"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, content, fragment):
    with pytest.raises(InputError, match=fragment):
        sources.read_records(write(tmp_path / name, content))


def test_missing_directory_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        sources.read_records(tmp_path / "nope.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        sources.read_records(tmp_path / "dir.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        sources.read_records(tmp_path / "latin1.jsonl")


def test_missing_field_lists_the_columns(tmp_path):
    path = write(tmp_path / "d.csv", "id,query,response\n1,q,a\n")
    with pytest.raises(InputError, match="no field 'question'; its fields are id, query, response"):
        data.load_splits(args(train_file=str(path)))


def test_all_answers_empty_and_bad_ratios(tmp_path):
    path = write(
        tmp_path / "d.jsonl", "".join(json.dumps({"question": f"q{i}", "answer": ""}) + "\n" for i in range(20))
    )
    with pytest.raises(InputError, match="answers in the train split are empty"):
        data.load_splits(args(train_file=str(path)))
    with pytest.raises(InputError, match="sum to 1"):
        data.load_splits(args(train_file=str(path), split_ratios=[0.8, 0.3, 0.1]))
    with pytest.raises(InputError, match="no data: give train_file"):
        data.load_splits(args())


def test_test_file_alone_for_prediction(tmp_path):
    path = write(tmp_path / "test.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
    splits = data.load_splits(args(test_file=str(path), max_predict_samples=1))
    assert splits.sizes() == {"train": 0, "validation": 0, "test": 1}


def test_benchmark_folds_never_share_a_question(tmp_path, monkeypatch):
    """bench_recipes' dev, dev2 and test parts are held out from the training file each is scored against."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench_recipes = importlib.import_module("bench_recipes")
    source = write(tmp_path / "ori_pqal.json", json.dumps({str(i): {"QUESTION": f"q{i}"} for i in range(500)}))
    monkeypatch.setitem(bench_recipes.SOURCES, "pubmedqa", source)
    monkeypatch.setattr(bench_recipes, "WORK", tmp_path / "work")
    parts = {name: set(json.loads(path.read_text())) for name, path in bench_recipes.split_source("pubmedqa").items()}
    assert (len(parts["test"]), len(parts["dev"]), len(parts["dev2"]), len(parts["train"]), len(parts["train2"])) == (
        100,
        50,
        50,
        350,
        350,
    )
    for phase in ("dev", "dev2", "test"):
        for selects in (False, True):  # a recipe keeping its best checkpoint validates on a third part
            files = bench_recipes.phase_parts(phase, selects, bench_recipes.split_source("pubmedqa"))
            train, validation, scored = (set(json.loads(f.read_text())) if f else set() for f in files)
            assert not (train & scored or train & validation or validation & scored), (phase, selects)
            assert len(train) + len(validation) + len(scored) == (500 if phase == "test" else 400)
    assert not parts["test"] & (parts["train2"] | parts["dev2"]) and parts["all"] == set(map(str, range(500)))


# ----------------------------------------------------------------------------- labels and options


def yes_no_rows(n=12):
    decisions = ["yes", "no", "maybe", "Yes"]
    return [
        {
            "id": f"q{i}",
            "question": f"Does drug {i} work?",
            "answer": f"Trial {i} says so.",
            "decision": decisions[i % 4],
        }
        for i in range(n)
    ]


def jsonl(path, rows):
    return str(write(path, "".join(json.dumps(r) + "\n" for r in rows)))


def test_labels_come_from_the_training_split_and_are_normalised(tmp_path):
    splits = data.load_splits(args(train_file=jsonl(tmp_path / "d.jsonl", yes_no_rows()), label_field="decision"))
    assert splits.labels == ("maybe", "no", "yes") and "train split" in splits.labels_from
    every = [row for rows in splits.examples.values() for row in rows]
    assert {row["label"] for row in every} <= {"maybe", "no", "yes"}  # "Yes" read as yes
    assert all(row["answer"].startswith("Trial") for row in every)  # --target answer: unchanged


@pytest.mark.parametrize(
    ("target", "written", "reference"),
    [
        ("label", "yes", "yes"),
        ("label_then_answer", "Yes. Trial 0 says so.", "Trial 0 says so."),
        ("answer", "Trial 0 says so.", "Trial 0 says so."),
    ],
)
def test_the_target_decides_what_the_model_learns_to_write_and_the_reference_stays_the_data(
    tmp_path, target, written, reference
):
    file = jsonl(tmp_path / "d.jsonl", yes_no_rows())
    splits = data.load_splits(
        args(
            train_file=file,
            label_field="decision",
            labels=["yes", "no", "maybe"],
            target=target,
            split_ratios=[1, 0, 0],
        )
    )
    example = splits.examples["train"][0]
    assert example["target"] == written and example["answer"] == reference and splits.labels == ("yes", "no", "maybe")


def test_target_label_needs_no_answer_field(tmp_path):
    rows = [{"question": f"Q{i}?", "decision": ["yes", "no"][i % 2]} for i in range(4)]
    splits = data.load_splits(
        args(
            train_file=jsonl(tmp_path / "d.jsonl", rows), label_field="decision", target="label", split_ratios=[1, 0, 0]
        )
    )
    assert [row["answer"] for row in splits.examples["train"]] == ["yes", "no", "yes", "no"]


def test_a_label_outside_the_set_names_the_row(tmp_path):
    rows = yes_no_rows(4)
    test = [{"question": "Odd?", "answer": "a", "decision": "perhaps"}]
    with pytest.raises(
        InputError, match=r"t.jsonl record 1: label \"perhaps\" is not one of the labels maybe, no, yes"
    ):
        data.load_splits(
            args(
                train_file=jsonl(tmp_path / "d.jsonl", rows),
                test_file=jsonl(tmp_path / "t.jsonl", test),
                label_field="decision",
            )
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"label_field": "verdict"},
            "has no field 'verdict'; its fields are id, question, answer, decision; set label_field",
        ),
        ({"label_field": "decision", "labels": ["yes"]}, "labels: 1 label"),
        (
            {"label_field": "decision", "target": "label_then_answer", "answer_field": "long"},
            "has no field 'long' (target label_then_answer writes it after the label)",
        ),
    ],
)
def test_bad_label_settings_are_input_errors(tmp_path, overrides, message):
    with pytest.raises(InputError, match=re.escape(message)):
        data.load_splits(args(train_file=jsonl(tmp_path / "d.jsonl", yes_no_rows()), **overrides))


def test_a_training_split_with_one_label_value_asks_for_the_label_set(tmp_path):
    rows = [{**row, "decision": "yes"} for row in yes_no_rows()]
    with pytest.raises(InputError, match="take 1 value.*give the label set with labels"):
        data.load_splits(args(train_file=jsonl(tmp_path / "d.jsonl", rows), label_field="decision"))


MC = [
    {
        "question": "Which hormone lowers blood glucose?",
        "opa": "Glucagon",
        "opb": "Insulin",
        "opc": "Cortisol",
        "opd": "Adrenaline",
        "cop": 1,
    },
    {
        "question": "Which vitamin deficiency causes scurvy?",
        "opa": "Vitamin A",
        "opb": "Vitamin D",
        "opc": "Vitamin C",
        "opd": "Vitamin K",
        "cop": "C",
    },
    {
        "question": "Which organ makes bile?",
        "opa": "Liver",
        "opb": "Pancreas",
        "opc": "Spleen",
        "opd": "Kidney",
        "cop": "Liver",
    },
]


@pytest.mark.parametrize(
    "layout",
    ["fields", "list", "dict"],
)
def test_multiple_choice_options_are_lettered_into_the_question(tmp_path, layout):
    rows = []
    for row in MC:
        options = [row[k] for k in ("opa", "opb", "opc", "opd")]
        if layout == "list":
            row = {"question": row["question"], "options": options, "cop": row["cop"]}
        elif layout == "dict":
            row = {"question": row["question"], "options": dict(zip("ABCD", options)), "cop": row["cop"]}
        rows.append(row)
    fields = ["opa", "opb", "opc", "opd"] if layout == "fields" else ["options"]
    splits = data.load_splits(
        args(
            train_file=jsonl(tmp_path / "mc.jsonl", rows),
            label_field="cop",
            options_field=fields,
            target="label",
            split_ratios=[1, 0, 0],
        )
    )
    train = splits.examples["train"]
    assert splits.labels == ("A", "B", "C", "D")
    assert [row["label"] for row in train] == ["B", "C", "A"]  # index, letter and option text
    assert train[0]["question"] == (
        "Which hormone lowers blood glucose?\nA. Glucagon\nB. Insulin\nC. Cortisol\nD. Adrenaline"
    )
    assert train[0]["options"]["B"] == "Insulin" and train[0]["answer"] == "B"


def test_a_question_with_one_option_is_refused_naming_the_row(tmp_path):
    rows = [MC[0], {"question": "Odd?", "options": ["only"], "cop": 0}]
    rows[0] = {"question": MC[0]["question"], "options": ["Glucagon", "Insulin"], "cop": 1}
    with pytest.raises(InputError, match="mc.jsonl record 2: 1 option.*needs at least two"):
        data.load_splits(
            args(
                train_file=jsonl(tmp_path / "mc.jsonl", rows),
                label_field="cop",
                options_field=["options"],
                target="label",
            )
        )


def test_a_piped_file_is_hashed_from_the_bytes_that_were_parsed(tmp_path):
    """`--test_file <(cat data.jsonl)`: a pipe can be read once; the recorded hash is of the bytes parsed."""
    import hashlib
    import os
    import threading

    content = b'{"question": "What does insulin do?", "answer": "It lowers glucose."}\n' * 3
    pipe = tmp_path / "fifo.jsonl"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_bytes, args=(content,))
    writer.start()
    records, source = sources.read_source(pipe)
    writer.join()
    assert len(records) == 3 and source["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_local_folder_given_as_dataset_name_is_read_as_local_files(tmp_path):
    line = b'{"question": "What does insulin do?", "answer": "It lowers glucose."}\n'
    (tmp_path / "data").mkdir()
    (tmp_path / "train.jsonl").write_bytes(line * 4)
    (tmp_path / "data" / "test-00000-of-00001.jsonl").write_bytes(line * 2)
    args = SimpleNamespace(dataset_name=str(tmp_path), dataset_config_name=None, data_format="auto")
    records, origin = sources.raw_splits(args)
    assert {name: len(rows) for name, rows in records.items()} == {"train": 4, "test": 2}
    assert "dataset" not in origin  # not a Hub dataset: files with their hashes
    assert origin["train"] == {"path": str(tmp_path / "train.jsonl"), "sha256": hashlib.sha256(line * 4).hexdigest()}
    (tmp_path / "dev.csv").write_text("question,answer\nq,a\n")
    (tmp_path / "validation.jsonl").write_bytes(line)
    with pytest.raises(InputError, match="the validation split has 2 files"):
        sources.raw_splits(args)
    (tmp_path / "dev.csv").unlink()
    assert sources.raw_splits(args)[0].keys() == {"train", "validation", "test"}
    for path in tmp_path.rglob("*.jsonl"):
        path.unlink()
    with pytest.raises(InputError, match="is a local folder without train.. or test.. files"):
        sources.raw_splits(args)


def test_a_resumed_run_checks_the_train_file_of_a_local_dataset_folder(tmp_path):
    from bioqa.train.resume import check_same_data

    folder = tmp_path / "qa"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    args = SimpleNamespace(train_file=None, dataset_name=str(folder))
    assert sources.training_file(args) == str(folder / "train.jsonl")
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    digest = hashlib.sha256((folder / "train.jsonl").read_bytes()).hexdigest()
    (run / "run_manifest.json").write_text(json.dumps({"data_sources": {"train": {"sha256": digest}}}))
    check_same_data(run / "checkpoint-2", sources.training_file(args))
    (folder / "train.jsonl").write_text('{"question": "q", "answer": "another"}\n')
    with pytest.raises(InputError, match="changed since the run"):
        check_same_data(run / "checkpoint-2", sources.training_file(args))


def test_training_learns_the_target_while_the_answer_stays_the_reference(tmp_path, tokenizer):
    from bioqa.data import prompts
    from helpers import prompt_args

    file = jsonl(tmp_path / "d.jsonl", yes_no_rows())
    settings = args(train_file=file, label_field="decision", target="label_then_answer", split_ratios=[1, 0, 0])
    example = data.load_splits(settings).examples["train"][0]
    fmt = prompts.prompt_format(tokenizer, prompt_args())
    features, _ = prompts.encode_for_training(tokenizer, fmt, example, 256)
    learned = [token for token, label in zip(features["input_ids"], features["labels"]) if label != -100]
    assert tokenizer.decode(learned).startswith("Yes. Trial 0 says so.") and example["answer"] == "Trial 0 says so."


def test_an_error_names_the_records_number_in_its_file_when_the_splits_are_cut_from_it(tmp_path):
    rows = [{"id": str(i), "question": f"q{i}", "answer": f"a{i}"} for i in range(20)]
    rows[13]["answer"] = {"text": "a13"}  # the 14th record; after the shuffle it sits elsewhere in its split
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InputError, match=r"train.jsonl record 14: field 'answer' is"):
        data.load_splits(args(train_file=str(path), split_ratios=[0.5, 0.25, 0.25]))
