"""examples/accelerate_configs/: each file is a configuration `accelerate launch --config_file` accepts, with the
engine settings the training scripts rely on, and DeepSpeed's batch, accumulation and clipping left to the scripts'
arguments. (The FSDP one is run for real in test_run_pretrain.py and test_run_finetune.py, on CPU processes; all of
them on a GPU by benchmarks/gpu_engines_check.sh.)"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "accelerate_configs"


def flag(value) -> bool:
    """A launcher flag as Accelerate exports it to the processes (``str(value).lower()``: YAML gives booleans)."""
    return str(value).lower() == "true"


def launch_arguments(name: str):
    """The arguments `accelerate launch --config_file <name>` runs with (the config merged and validated)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parsed = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "examples/run_pretrain.py"])
    return _validate_launch_command(parsed)[0]


def test_the_ready_configs_are_there():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == [
        "ddp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml", "multi_node.yaml",
    ]  # fmt: skip


def test_data_parallel_on_one_and_on_two_machines():
    ddp = launch_arguments("ddp.yaml")
    assert ddp.multi_gpu and not ddp.use_fsdp and not ddp.use_deepspeed
    assert (ddp.num_processes, ddp.num_machines, ddp.mixed_precision) == (8, 1, "bf16")
    nodes = launch_arguments("multi_node.yaml")
    assert nodes.multi_gpu and (nodes.num_processes, nodes.num_machines) == (16, 2)
    assert nodes.main_process_ip and nodes.main_process_port == 29500


def test_fsdp_full_shard_with_activation_checkpointing_of_the_models_blocks():
    fsdp = launch_arguments("fsdp.yaml")
    assert fsdp.use_fsdp and fsdp.fsdp_version == 2 and fsdp.num_processes == 8
    assert flag(fsdp.fsdp_reshard_after_forward)  # FULL_SHARD
    assert flag(fsdp.fsdp_activation_checkpointing) and fsdp.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_transformer_layer_cls_to_wrap is None  # the model's _no_split_modules: SwinIHBlock for SwinIH
    assert fsdp.fsdp_state_dict_type == "SHARDED_STATE_DICT"
    from lemart_hf import SwinIHForHarmonization

    assert SwinIHForHarmonization._no_split_modules == ["SwinIHBlock"]


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_leaves_batch_accumulation_and_clipping_to_the_scripts(stage):
    deepspeed = launch_arguments(f"deepspeed_zero{stage}.yaml")
    assert deepspeed.use_deepspeed and deepspeed.zero_stage == stage and deepspeed.num_processes == 8
    assert deepspeed.gradient_accumulation_steps is None and deepspeed.gradient_clipping is None
    assert deepspeed.deepspeed_config_file is None  # Accelerate's generated config: "auto" micro-batch
    if stage == 3:
        assert flag(deepspeed.zero3_save_16bit_model)  # the final model folder is gathered from the shards
        assert not flag(deepspeed.zero3_init_flag)
