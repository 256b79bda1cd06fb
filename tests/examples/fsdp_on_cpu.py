"""Run an example script under FSDP in CPU processes (gloo), for the tests:

    ACCELERATE_USE_CPU=1 accelerate launch --config_file examples/accelerate_configs/fsdp.yaml --num_processes 2 \\
        --mixed_precision no tests/examples/fsdp_on_cpu.py examples/run_pretrain.py ARGS

Accelerate 1.16 keeps a group of CPU processes data parallel (MULTI_CPU) when FSDP is asked for: its FSDP branch
(`AcceleratorState.__init__`) is only taken for GPU-like devices, while torch's FSDP2 (`fully_shard`) runs on CPU
with gloo. This shim does the one thing Accelerate does on GPUs and skips on CPUs: it sets the distributed type to
FSDP (in the shared state of `AcceleratorState` and of `PartialState`, which `AcceleratorState` copies from again
whenever it is created) and keeps the FSDP plugin Accelerate built from the launcher's environment. Everything else
(sharding, activation checkpointing, sharded checkpoints, the gathered state dict) is Accelerate's and torch's code,
and the script runs unchanged.
"""

from __future__ import annotations

import runpy
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin


AcceleratorState.__init__ = _init_with_fsdp_on_cpu
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
