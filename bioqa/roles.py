"""What each setting of a training run does, declared once; every list of settings is derived from it.

A setting of the toolkit's own sections declares its role in its field's metadata (`bioqa/settings.py`);
transformers' TrainingArguments fields are given theirs in `TRAINER_ROLES`, which names every field of the pinned
transformers so that a new pin with a field nobody classified fails a test instead of going unnoticed. From the
roles come: what a resumed run must keep (`RESUMED`), what a zero-shot run must share with a recipe to be
comparable (`ANSWER_SHAPING`), and what the model card's recipe table shows (`RECIPE`).
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    TRAINING = "changes the steps trained: the model, its adapter, the optimiser and schedule, batches, seed, precision"
    DATA = "which records are read and how they are split"
    EXAMPLE = "how a record becomes a prompt and a target: fields, labels, templates, lengths"
    GENERATION = "how answers are generated and their labels found"
    SCORING = "what is evaluated, how it is scored, and what the scores decide (best checkpoint, early stopping)"
    RUN = "what runs and where it writes: commands, devices, logging, saving, the Hub; changes no trained weight"


# A resumed run must be the run it continues; a zero-shot run is compared with a fine-tuned one only when both are
# asked the same way.
RESUMED = frozenset({Role.TRAINING, Role.DATA, Role.EXAMPLE})
ANSWER_SHAPING = frozenset({Role.EXAMPLE, Role.GENERATION})
RECIPE = frozenset({Role.TRAINING, Role.EXAMPLE})

_TRAINER_TRAINING = """
per_device_train_batch_size num_train_epochs max_steps learning_rate lr_scheduler_type lr_scheduler_kwargs
warmup_steps optim optim_args weight_decay adam_beta1 adam_beta2 adam_epsilon optim_target_modules
gradient_accumulation_steps average_tokens_across_devices max_grad_norm label_smoothing_factor bf16 fp16
activation_checkpointing gradient_checkpointing neftune_noise_alpha seed data_seed train_sampling_strategy
dataloader_drop_last
"""
_TRAINER_SCORING = """
bf16_full_eval fp16_full_eval eval_strategy eval_steps eval_delay per_device_eval_batch_size prediction_loss_only
eval_on_start eval_do_concat_batches eval_use_gather_object eval_accumulation_steps include_for_metrics
batch_eval_metrics load_best_model_at_end metric_for_best_model greater_is_better
"""
# Speed, memory, parallelism, logging, saving and the Hub: the same steps, computed or recorded otherwise.
_TRAINER_RUN = """
output_dir tf32 activation_checkpointing_kwargs gradient_checkpointing_kwargs torch_compile torch_compile_backend
torch_compile_mode use_liger_kernel liger_kernel_config use_cache torch_empty_cache_steps auto_find_batch_size
logging_strategy logging_steps logging_first_step log_on_each_node logging_nan_inf_filter
include_num_input_tokens_seen log_level log_level_replica disable_tqdm report_to run_name project trackio_space_id
trackio_bucket_id trackio_static_space_id save_only_model save_strategy save_steps save_on_each_node save_total_limit
enable_jit_checkpoint push_to_hub hub_token hub_private_repo hub_model_id hub_strategy hub_always_push hub_revision
ignore_data_skip restore_callback_states_from_checkpoint full_determinism use_cpu accelerator_config
parallelism_config dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers
dataloader_prefetch_factor dataloader_multiprocessing_context dataloader_in_order remove_unused_columns label_names
length_column_name ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph ddp_backend
ddp_timeout fsdp fsdp_config deepspeed debug skip_memory_metrics do_train do_eval do_predict resume_from_checkpoint
local_rank
"""
TRAINER_ROLES: dict[str, Role] = {
    name: role
    for names, role in ((_TRAINER_TRAINING, Role.TRAINING), (_TRAINER_SCORING, Role.SCORING), (_TRAINER_RUN, Role.RUN))
    for name in names.split()
}
