"""Typed options of load_models.py; with `transformers.TrainingArguments` they make its whole CLI.

Names follow the transformers example scripts. Every field has one help text, shown by --help.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bioqa.labels import TARGETS
from bioqa.metrics import ALL_METRICS
from bioqa.modeling import DEFAULT_MODEL
from bioqa.sources import FORMATS

DEFAULT_SYSTEM_PROMPT = (
    "You are a biomedical expert. Answer the question accurately and concisely, using the context when one is given."
)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Base model: a Hugging Face Hub id or a local folder."}
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "An existing LoRA adapter (folder or Hub id) to predict with, on top of --model_name_or_path."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use if not the model's own."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the Hub to run (only for models you trust)."}
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "auto (CUDA, then MPS, then CPU), cuda, mps or cpu.",
            "choices": ["auto", "cuda", "mps", "cpu"],
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "Training precision: auto (best the device runs), bf16, fp16 or fp32.",
            "choices": ["auto", "bf16", "fp16", "fp32"],
        },
    )
    generation_dtype: str = field(
        default="auto",
        metadata={
            "help": "Dtype of the weights evaluations and --do_predict generate with: auto (bf16 where the device "
            "computes it natively: CUDA from compute capability 8.0, a CPU with AVX512-BF16/AMX; fp16 on an older "
            "GPU; a 4-bit base's compute dtype; else fp32), bf16, fp16 or fp32. LoRA weights being trained stay fp32.",
            "choices": ["auto", "bf16", "fp16", "fp32"],
        },
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "QLoRA: load the base in 4-bit NF4 with bitsandbytes (CUDA only; pip install -e '.[gpu]')."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel (eager, sdpa, flash_attention_2); default: the model's. On a CPU, sdpa in bf16 "
            "trains in float32 and decodes one-token steps as matrix products (bioqa/attention.py)."
        },
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hugging Face Hub dataset name (instead of local files); a local folder is read as its files "
            "train.*, validation.* (or valid.*, dev.*) and test.* (.jsonl, .json, .csv, .parquet; also train-*.* and "
            "data/), hashed like --train_file."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of --dataset_name, e.g. pqa_labeled."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data: .jsonl, .json, .csv or .parquet."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation data; default: split off the training data."}
    )
    test_file: str | None = field(default=None, metadata={"help": "Test data; default: split off the training data."})
    data_format: str = field(
        default="auto",
        metadata={
            "help": "File format; auto reads the suffix.",
            "choices": list(FORMATS),
        },
    )
    question_field: str = field(
        default="question", metadata={"help": "Field holding the question (dotted path for nested fields)."}
    )
    context_field: str | None = field(
        default=None,
        metadata={"help": "Field holding an optional context, e.g. context.contexts; default: 'context' if present."},
    )
    answer_field: str = field(
        default="answer", metadata={"help": "Field holding the reference answer, e.g. long_answer."}
    )
    label_field: str | None = field(
        default=None,
        metadata={
            "help": "Field holding the short answer: yes/no/maybe (PubMedQA's final_decision) or a multiple-choice "
            "question's correct option (letter, 0-based index or option text); scored by accuracy and macro-F1."
        },
    )
    labels: list[str] | None = field(
        default=None,
        metadata={"help": "The label set, e.g. yes no maybe; default: the training split's distinct labels."},
    )
    options_field: list[str] | None = field(
        default=None,
        metadata={
            "help": "A multiple-choice question's options: one field holding a list or an object keyed by letter "
            "(MedQA's options), or one field per option (MedMCQA's opa opb opc opd); shown as lettered lines."
        },
    )
    target: str = field(
        default="answer",
        metadata={
            "help": "What the model learns to write: answer (the answer field), label (the label alone) or "
            "label_then_answer (e.g. 'Yes. <answer>'); the system prompt should ask for the same.",
            "choices": list(TARGETS),
        },
    )
    id_field: str = field(
        default="id", metadata={"help": "Field holding an example id; missing ids become <split>-<row>."}
    )
    field_separator: str = field(
        default="\n", metadata={"help": "Joins list-valued fields (e.g. a list of abstract sections) into one text."}
    )
    split_ratios: list[float] = field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        metadata={"help": "train validation test fractions for splitting one data source; must sum to 1."},
    )
    split_seed: int = field(default=42, metadata={"help": "Seed of the train/validation/test split."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training examples (first after the split)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many validation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use at most this many test examples."})
    max_seq_length: int = field(
        default=1024,
        metadata={"help": "Longest prompt + answer in tokens; longer examples lose context first, never answer."},
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Train on batches laid end to end without padding, each example attending only to itself: "
            "for flash_attention_2 on CUDA (--attn_implementation); on CPU the dense mask it needs measured slower."
        },
    )


@dataclass
class PromptArguments:
    use_chat_template: str = field(
        default="auto",
        metadata={
            "help": "auto (use the tokenizer's chat template if it has one), yes or no.",
            "choices": ["auto", "yes", "no"],
        },
    )
    system_prompt: str = field(
        default=DEFAULT_SYSTEM_PROMPT,
        metadata={"help": "System message (chat) or first line (plain template); empty for none."},
    )
    question_template: str = field(
        default="Question: {question}", metadata={"help": "User text for an example without context ({question})."}
    )
    context_template: str = field(
        default="Context: {context}\nQuestion: {question}",
        metadata={"help": "User text for an example with context ({context}, {question})."},
    )
    answer_prefix: str = field(
        default="\nAnswer:", metadata={"help": "Plain template only: text between the question and the answer."}
    )


@dataclass
class LoraArguments:
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA)."}
    )
    lora_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Dropout on the LoRA input (0.05 made a CPU step ~25% slower: it copies every adapted input)."
        },
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Module names to adapt; all-linear = every linear layer but the output head."},
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Modules trained in full and saved with the adapter, e.g. embed_tokens lm_head."},
    )
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA: scale by alpha / sqrt(r)."})
    use_dora: bool = field(default=False, metadata={"help": "DoRA: weight-decomposed LoRA."})


@dataclass
class GenerationEvalArguments:
    generation_eval: bool = field(
        default=True,
        metadata={
            "help": "At each evaluation, generate answers and log ROUGE/BLEU/METEOR (--no_generation_eval to skip)."
        },
    )
    generation_eval_samples: int = field(
        default=200, metadata={"help": "Validation examples to generate for (a fixed seeded subset; 0 = all)."}
    )
    generation_max_new_tokens: int = field(default=128, metadata={"help": "Longest generated answer in tokens."})
    generation_min_new_tokens: int = field(
        default=0, metadata={"help": "Shortest generated answer in tokens (EOS is held back until then)."}
    )
    generation_batch_size: int = field(
        default=32, metadata={"help": "Prompts per generate() call (prompts are sorted by length to cut padding)."}
    )
    generation_num_beams: int = field(default=1, metadata={"help": "1 = greedy decoding."})
    generation_cache: str = field(
        default="auto",
        metadata={
            "help": "KV cache while generating: auto (reserved on a CPU, where it was measured; dynamic on CUDA and "
            "MPS), reserved (prompts of near-equal length prefilled together without padding, room for the answer set "
            "aside after them, each token written in place), dynamic (transformers' own: one padded prefill, grows by "
            "copying at every token), static (preallocated, attends over its whole length) or compiled (static plus "
            "torch.compile of the decoding step). Same answers in float32; in bf16 the rounding follows the "
            "prefill's shapes. Speeds in docs/BENCHMARKS.md.",
            "choices": ["auto", "reserved", "dynamic", "static", "compiled"],
        },
    )
    generation_fold_lora: bool | None = field(
        default=None,
        metadata={
            "help": "While generating, fold each LoRA update into a temporary copy of its weight: one matrix product "
            "per layer, faster answers from an adapter (an evaluation on a CPU 1.2x), at the cost of the adapted "
            "weights' memory once more; skipped, with a log line, where that would take over half the device's free "
            "memory (4-bit and DoRA layers stay unfolded). Default: on a CPU, where it was measured; off on CUDA "
            "and MPS. true / false forces it."
        },
    )
    generation_repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Penalty > 1 discourages repeating the answer's own tokens (the prompt is not penalised)."},
    )
    generation_no_repeat_ngram_size: int = field(
        default=0,
        metadata={
            "help": "Forbid any n-gram of this size twice in an answer; quoting the prompt stays allowed (0 = off)."
        },
    )
    label_scoring: str = field(
        default="generate",
        metadata={
            "help": "With --label_field, how an answer's label is found: generate (read from the generated answer: "
            "accuracy, macro_f1, unparsed), loglik (no generation: the most likely label after the prompt, as "
            "lm-evaluation-harness does: loglik_accuracy, loglik_macro_f1; far cheaper) or both.",
            "choices": ["generate", "loglik", "both"],
        },
    )
    eval_metrics: list[str] = field(
        default_factory=lambda: list(ALL_METRICS),
        metadata={"help": f"Metrics on generated answers: {', '.join(ALL_METRICS)}."},
    )


@dataclass
class RunArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an earlier run's output in --output_dir: exactly the files it recorded in "
            "written_files.json; a folder holding any other file, or one changed since, is refused, as is one that "
            "is or holds an input."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improving --metric_for_best_model."}
    )
    bootstrap_samples: int = field(
        default=1000,
        metadata={
            "help": "--do_predict: bootstrap resamples for the 95 percent intervals in predict_metrics.json "
            "(seeded by --seed)."
        },
    )
