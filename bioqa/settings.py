"""The settings of a training run, in typed sections; with `transformers.TrainingArguments` they make the whole
CLI of load_models.py.

Names follow the transformers example scripts. Every field has one help text, shown by `--help`, and one role
(`bioqa.roles.Role`): what a resume must keep, what a zero-shot run shares with a recipe and what the model card
shows are derived from the roles, never listed by hand.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from bioqa.data.conversations import RECORD_FORMATS
from bioqa.data.labels import TARGETS
from bioqa.data.sources import FORMATS
from bioqa.evaluate.metrics import DEFAULT_METRICS, metric_names
from bioqa.io.paths import DEFAULT_MODEL
from bioqa.roles import ANSWER_SHAPING, RECIPE, RESUMED, TRAINER_ROLES, Role


def setting(role: Role, help: str, default: Any = dataclasses.MISSING, **more: Any) -> Any:
    """A field with its role and its help text (and argparse's `choices`, or a `default_factory`)."""
    choices = more.pop("choices", None)
    metadata = {"role": role, "help": help, **({"choices": choices} if choices else {})}
    return field(default=default, metadata=metadata, **more)


DEFAULT_SYSTEM_PROMPT = (
    "You are a biomedical expert. Answer the question accurately and concisely, using the context when one is given."
)


@dataclass(frozen=True)
class ModelArguments:
    model_name_or_path: str = setting(
        Role.TRAINING, "Base model: a Hugging Face Hub id or a local folder.", DEFAULT_MODEL
    )
    adapter_name_or_path: str | None = setting(
        Role.RUN, "An existing LoRA adapter (folder or Hub id) to predict with, on top of model_name_or_path.", None
    )
    tokenizer_name: str | None = setting(Role.TRAINING, "Tokenizer to use if not the model's own.", None)
    trust_remote_code: bool = setting(
        Role.RUN, "Allow model code from the Hub to run (only for models you trust).", False
    )
    device: str = setting(
        Role.RUN, "auto (CUDA, then MPS, then CPU), cuda, mps or cpu.", "auto", choices=["auto", "cuda", "mps", "cpu"]
    )
    precision: str = setting(
        Role.TRAINING,
        "Training precision: auto (best the device runs), bf16, fp16 or fp32.",
        "auto",
        choices=["auto", "bf16", "fp16", "fp32"],
    )
    generation_dtype: str = setting(
        Role.GENERATION,
        "Dtype of the weights evaluations and do_predict generate with: auto (bf16 where the device "
        "computes it natively: CUDA from compute capability 8.0, a CPU with AVX512-BF16/AMX; fp16 on an older "
        "GPU; a 4-bit base's compute dtype; else fp32), bf16, fp16 or fp32. LoRA weights being trained stay fp32.",
        "auto",
        choices=["auto", "bf16", "fp16", "fp32"],
    )
    load_in_4bit: bool = setting(
        Role.TRAINING,
        "QLoRA: load the base in 4-bit NF4 with bitsandbytes (CUDA only; pip install -e '.[gpu]').",
        False,
    )
    attn_implementation: str | None = setting(
        Role.TRAINING,
        "Attention kernel (eager, sdpa, flash_attention_2); default: the model's. On a CPU, sdpa in bf16 "
        "trains in float32 and decodes one-token steps as matrix products (bioqa/generate/attention.py).",
        None,
    )


@dataclass(frozen=True)
class DataArguments:
    dataset_name: str | None = setting(
        Role.DATA,
        "Hugging Face Hub dataset name (instead of local files); a local folder is read as its files "
        "train.*, validation.* (or valid.*, dev.*) and test.* (.jsonl, .json, .csv, .parquet; also train-*.* and "
        "data/), hashed like train_file.",
        None,
    )
    dataset_config_name: str | None = setting(Role.DATA, "Configuration of dataset_name, e.g. pqa_labeled.", None)
    train_file: str | None = setting(Role.DATA, "Training data: .jsonl, .json, .csv or .parquet.", None)
    validation_file: str | None = setting(Role.DATA, "Validation data; default: split off the training data.", None)
    test_file: str | None = setting(Role.DATA, "Test data; default: split off the training data.", None)
    data_format: str = setting(Role.DATA, "File format; auto reads the suffix.", "auto", choices=list(FORMATS))
    record_format: str = setting(
        Role.EXAMPLE,
        "What a record is: fields (a question, answer and context field), messages (TRL's list of role/content "
        "turns), sharegpt (conversations of from/value turns), alpaca (instruction, input, output); auto detects it.",
        "auto",
        choices=list(RECORD_FORMATS),
    )
    assistant_loss: str = setting(
        Role.EXAMPLE,
        "Conversations: train on every assistant turn (all) or only the last (last), the one evaluations generate.",
        "all",
        choices=["all", "last"],
    )
    question_field: str = setting(
        Role.EXAMPLE, "Field holding the question (dotted path for nested fields).", "question"
    )
    context_field: str | None = setting(
        Role.EXAMPLE, "Field holding an optional context, e.g. context.contexts; default: 'context' if present.", None
    )
    answer_field: str = setting(Role.EXAMPLE, "Field holding the reference answer, e.g. long_answer.", "answer")
    label_field: str | None = setting(
        Role.EXAMPLE,
        "Field holding the short answer: yes/no/maybe (PubMedQA's final_decision) or a multiple-choice "
        "question's correct option (letter, 0-based index or option text); scored by accuracy and macro-F1.",
        None,
    )
    labels: list[str] | None = setting(
        Role.EXAMPLE, "The label set, e.g. yes no maybe; default: the training split's distinct labels.", None
    )
    options_field: list[str] | None = setting(
        Role.EXAMPLE,
        "A multiple-choice question's options: one field holding a list or an object keyed by letter "
        "(MedQA's options), or one field per option (MedMCQA's opa opb opc opd); shown as lettered lines.",
        None,
    )
    target: str = setting(
        Role.EXAMPLE,
        "What the model learns to write: answer (the answer field), label (the label alone) or "
        "label_then_answer (e.g. 'Yes. <answer>'); the system prompt should ask for the same.",
        "answer",
        choices=list(TARGETS),
    )
    id_field: str = setting(Role.RUN, "Field holding an example id; missing ids become <split>-<row>.", "id")
    field_separator: str = setting(
        Role.EXAMPLE, "Joins list-valued fields (e.g. a list of abstract sections) into one text.", "\n"
    )
    split_ratios: list[float] = setting(
        Role.DATA,
        "train validation test fractions for splitting one data source; must sum to 1.",
        default_factory=lambda: [0.8, 0.1, 0.1],
    )
    split_seed: int = setting(Role.DATA, "Seed of the train/validation/test split.", 42)
    max_train_samples: int | None = setting(
        Role.DATA, "Use at most this many training examples (first after the split).", None
    )
    max_eval_samples: int | None = setting(Role.SCORING, "Use at most this many validation examples.", None)
    max_predict_samples: int | None = setting(Role.SCORING, "Use at most this many test examples.", None)
    max_seq_length: int = setting(
        Role.EXAMPLE, "Longest prompt + answer in tokens; longer examples lose context first, never answer.", 1024
    )
    padding_free: bool = setting(
        Role.RUN,
        "Train on batches laid end to end without padding, each example attending only to itself: "
        "for flash_attention_2 on CUDA (attn_implementation); on CPU the dense mask it needs measured slower.",
        False,
    )


@dataclass(frozen=True)
class PromptArguments:
    use_chat_template: str = setting(
        Role.EXAMPLE,
        "auto (use the tokenizer's chat template if it has one), yes or no.",
        "auto",
        choices=["auto", "yes", "no"],
    )
    system_prompt: str = setting(
        Role.EXAMPLE, "System message (chat) or first line (plain template); empty for none.", DEFAULT_SYSTEM_PROMPT
    )
    question_template: str = setting(
        Role.EXAMPLE, "User text for an example without context ({question}).", "Question: {question}"
    )
    context_template: str = setting(
        Role.EXAMPLE,
        "User text for an example with context ({context}, {question}).",
        "Context: {context}\nQuestion: {question}",
    )
    answer_prefix: str = setting(
        Role.EXAMPLE, "Plain template only: text between the question and the answer.", "\nAnswer:"
    )


@dataclass(frozen=True)
class AdapterArguments:
    """The adapter trained on the base: a peft method (LoRA and its variants by default) and its options."""

    peft_method: str = setting(
        Role.TRAINING,
        "The peft method to train: lora (set with the lora_* options, use_dora, use_rslora) or another of peft's "
        "weight adapters (ia3, loha, lokr, oft, boft, vera, ...; docs/TRAINING.md lists them).",
        "lora",
    )
    peft_options: dict | None = setting(
        Role.TRAINING,
        'Further fields of the method\'s peft config as a JSON object, e.g. \'{"init_lora_weights": "pissa"}\' '
        "or '{\"r\": 8}' for loha; the options below are set by their own flags.",
        None,
    )
    lora_r: int = setting(Role.TRAINING, "LoRA rank.", 16)
    lora_alpha: int = setting(
        Role.TRAINING, "LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).", 32
    )
    lora_dropout: float = setting(
        Role.TRAINING,
        "Dropout on the LoRA input (0.05 made a CPU step ~25% slower: it copies every adapted input).",
        0.0,
    )
    lora_target_modules: list[str] = setting(
        Role.TRAINING,
        "Module names to adapt (with any peft method); all-linear = every linear layer but the output head.",
        default_factory=lambda: ["all-linear"],
    )
    modules_to_save: list[str] | None = setting(
        Role.TRAINING, "Modules trained in full and saved with the adapter, e.g. embed_tokens lm_head.", None
    )
    use_rslora: bool = setting(Role.TRAINING, "Rank-stabilised LoRA: scale by alpha / sqrt(r).", False)
    use_dora: bool = setting(Role.TRAINING, "DoRA: weight-decomposed LoRA.", False)


@dataclass(frozen=True)
class GenerationArguments:
    """How the model answers, in evaluations and predictions alike."""

    generation_max_new_tokens: int = setting(Role.GENERATION, "Longest generated answer in tokens.", 128)
    generation_min_new_tokens: int = setting(
        Role.GENERATION, "Shortest generated answer in tokens (EOS is held back until then).", 0
    )
    generation_batch_size: int = setting(
        Role.GENERATION, "Prompts per generate() call (prompts are sorted by length to cut padding).", 32
    )
    generation_num_beams: int = setting(Role.GENERATION, "1 = greedy decoding.", 1)
    generation_cache: str = setting(
        Role.GENERATION,
        "KV cache while generating: auto (reserved on a CPU, where it was measured; dynamic on CUDA and "
        "MPS), reserved (prompts of near-equal length prefilled together without padding, room for the answer set "
        "aside after them, each token written in place), dynamic (transformers' own: one padded prefill, grows by "
        "copying at every token), static (preallocated, attends over its whole length) or compiled (static plus "
        "torch.compile of the decoding step). Same answers in float32; in bf16 the rounding follows the "
        "prefill's shapes. Speeds in docs/BENCHMARKS.md.",
        "auto",
        choices=["auto", "reserved", "dynamic", "static", "compiled"],
    )
    generation_fold_lora: bool | None = setting(
        Role.GENERATION,
        "While generating, fold each LoRA update into a temporary copy of its weight: one matrix product "
        "per layer, faster answers from an adapter (an evaluation on a CPU 1.2x), at the cost of the adapted "
        "weights' memory once more; skipped, with a log line, where that would take over half the device's free "
        "memory (4-bit and DoRA layers stay unfolded). Default: on a CPU, where it was measured; off on CUDA "
        "and MPS. true / false forces it.",
        None,
    )
    generation_repetition_penalty: float = setting(
        Role.GENERATION, "Penalty > 1 discourages repeating the answer's own tokens (the prompt is not penalised).", 1.0
    )
    generation_no_repeat_ngram_size: int = setting(
        Role.GENERATION,
        "Forbid any n-gram of this size twice in an answer; quoting the prompt stays allowed (0 = off).",
        0,
    )
    label_scoring: str = setting(
        Role.GENERATION,
        "With label_field, how an answer's label is found: generate (read from the generated answer: "
        "accuracy, macro_f1, unparsed), loglik (no generation: the most likely label after the prompt, as "
        "lm-evaluation-harness does: loglik_accuracy, loglik_macro_f1; far cheaper) or both.",
        "generate",
        choices=["generate", "loglik", "both"],
    )


@dataclass(frozen=True)
class EvaluationArguments:
    """What is scored during training and prediction, and how it is summarised."""

    generation_eval: bool = setting(
        Role.SCORING, "At each evaluation, generate answers and log ROUGE/BLEU/METEOR; false skips it.", True
    )
    generation_eval_samples: int = setting(
        Role.SCORING, "Validation examples to generate for (a fixed seeded subset; 0 = all).", 200
    )
    eval_metrics: list[str] = setting(
        Role.SCORING,
        f"Metrics on generated answers: {', '.join(metric_names())}, or one registered with "
        "metrics_utils.register_metric.",
        default_factory=lambda: list(DEFAULT_METRICS),
    )
    early_stopping_patience: int | None = setting(
        Role.SCORING, "Stop after this many evaluations without improving metric_for_best_model.", None
    )
    bootstrap_samples: int = setting(
        Role.SCORING,
        "do_predict: bootstrap resamples for the 95 percent intervals in predict_metrics.json (seeded by seed).",
        1000,
    )
    benchmark_tasks: list[str] | None = setting(
        Role.SCORING,
        "After training, the forgetting check: lm-evaluation-harness tasks (as bioqa-benchmark's tasks: pubmedqa, "
        "multimedqa, ..., or local for the test split's labels) run on the base and on the adapter, compared "
        "question by question (paired interval, McNemar); results in output_dir/benchmark and the model card.",
        None,
    )


@dataclass(frozen=True)
class OutputArguments:
    """What a run may do to its output folder (output_dir itself is a training argument)."""

    overwrite_output_dir: bool = setting(
        Role.RUN,
        "Replace an earlier run's output in output_dir: exactly the files it recorded in "
        "written_files.json; a folder holding any other file, or one changed since, is refused, as is one that "
        "is or holds an input.",
        False,
    )


# The toolkit's own sections, in the order the command parses them (TrainingArguments comes last).
OWN_SECTIONS = (
    ModelArguments,
    DataArguments,
    PromptArguments,
    AdapterArguments,
    GenerationArguments,
    EvaluationArguments,
    OutputArguments,
)


def sections() -> tuple[type, ...]:
    """The option types a training run is made of, in the order the command parses them."""
    import transformers

    return (*OWN_SECTIONS, transformers.TrainingArguments)


def role_of(setting: dataclasses.Field) -> Role:
    """A setting's role: its own declaration, or for a TrainingArguments field the table's (KeyError: none)."""
    return setting.metadata["role"] if "role" in setting.metadata else TRAINER_ROLES[setting.name]


@functools.cache
def settings_with(roles: frozenset[Role]) -> tuple[str, ...]:
    """The names of the settings whose role is one of `roles`, in the command's order."""
    return tuple(
        setting.name
        for section in sections()
        for setting in dataclasses.fields(section)
        if setting.init and role_of(setting) in roles
    )


def resumed_settings() -> tuple[str, ...]:
    """What a resumed run must keep: every setting that changes the steps trained or the examples they see."""
    return settings_with(RESUMED)


def answer_settings() -> tuple[str, ...]:
    """What a zero-shot run must share with a recipe for its answers to be comparable with the fine-tuned ones."""
    return settings_with(ANSWER_SHAPING)


def recipe_settings() -> tuple[str, ...]:
    """What the model card's recipe table shows: the settings training used."""
    return settings_with(RECIPE)
