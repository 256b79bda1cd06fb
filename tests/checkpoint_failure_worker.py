"""Two processes save checkpoints while one of them fails, for tests/test_training.py:

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        tests/checkpoint_failure_worker.py OUTPUT_DIR RESULTS_DIR

(`--multi_gpu` on a machine without GPUs gives two gloo CPU processes.) After one good save (step 1), three saves
each fail on one process in one phase of `CheckpointManager.save`: step 2 the main process cannot make the folder,
step 3 the other process cannot write its part, step 4 the main process cannot flush the finished folder. Process N
writes one ``step S: ...`` line per save into RESULTS_DIR/rankN.txt: ``saved`` or the `CheckpointWriteError` it
got. A process left waiting at a barrier would never finish, and the test's timeout would catch it.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from unittest import mock

import torch
from accelerate import Accelerator

from lemart_hf.training import checkpoints
from lemart_hf.training.checkpoints import CheckpointManager, CheckpointWriteError, TrainingState


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def main() -> None:
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    manager = CheckpointManager(Path(sys.argv[1]))
    rank = accelerator.process_index
    lines = []
    failures = {
        1: None,
        2: (0, mock.patch.object(Path, "mkdir", disk_full)),
        3: (1, mock.patch.object(accelerator, "save_state", disk_full)),
        4: (0, mock.patch.object(checkpoints, "_fsync_tree", disk_full)),
    }
    for step, failure in failures.items():
        patch = failure[1] if failure and failure[0] == rank else mock.MagicMock()
        try:
            with patch:
                manager.save(accelerator, TrainingState(global_step=step))
            lines.append(f"step {step}: saved")
        except CheckpointWriteError as error:
            lines.append(f"step {step}: CheckpointWriteError: {error}")
    (Path(sys.argv[2]) / f"rank{rank}.txt").write_text("\n".join(lines) + "\n")
    # Leave together, without tearing the gloo group down: a process still destroying its group after the other had
    # exited (taking the TCP store of rank 0 with it) sometimes died of std::terminate (SIGABRT) in a clean CI run.
    accelerator.wait_for_everyone()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
