"""Resumable checkpoints: `TrainingState` (where a run is, a stream position included), `CheckpointManager` (atomic
``checkpoint-{step}`` folders, written as ``.tmp``, flushed to disk and renamed; rotation), `open_checkpoints` (the
manager of a run, on one shared folder or on every node's own disk), and for resuming `resume_point`,
`load_training_state` and `warn_on_run_mismatch`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

from .accelerator import _prog

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
#: Written last into a checkpoint, before the folder gets its final name: its presence marks a complete one.
TRAINING_STATE_FILE = "training_state.json"
#: Each process's position in a streamed dataset, when it has one (`TrainingState.data_position`).
DATA_POSITION_FILE = "data_position_{process}.json"
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_PARTIAL_SUFFIXES = (".tmp", ".trash")


@dataclasses.dataclass
class TrainingState:
    """Where a run is. Saved into every checkpoint as ``training_state.json``.

    Attributes:
        global_step: optimizer steps done.
        epoch: the epoch in progress.
        batches_in_epoch: batches (per process) of that epoch already consumed.
        micro_step: batches (per process) consumed since the start; numbers the composer's and the model's RNG.
        images_seen: training images consumed, all processes together.
        train_seconds: wall-clock seconds of training (data, composites, steps, checkpoints; not validation) over
            every invocation so far, up to the last checkpoint (work lost since is not counted); for N processes,
            multiply by N for device-hours.
        run: settings a resumed run must share for exactness (batch size, processes, seed, ...).
        generation: set by `CheckpointManager.save`: which run (process start) in the folder wrote the checkpoint.
        data_position: this process's position in a streamed dataset (`lemart_hf.data.streaming.StreamLoader.
            state_dict`), or None. Each process saves its own, as ``data_position_{process}.json``, not in
            ``training_state.json``.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    micro_step: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    run: dict = dataclasses.field(default_factory=dict)
    generation: int = 0
    data_position: dict | None = None

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        del fields["data_position"]
        return json.dumps(fields, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a folder named ``checkpoint-{step}``; None for any other name (``.tmp`` ones included)."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """A folder named ``checkpoint-{step}`` that holds its training state (written last, before the rename)."""
    path = Path(path)
    return path.is_dir() and checkpoint_step(path) is not None and (path / TRAINING_STATE_FILE).is_file()


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (so a power cut cannot reorder the rename)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, read-only folder); the message names it and the cause."""


class CheckpointManager:
    """Atomic ``checkpoint-{step}`` folders in ``output_dir``, at most ``total_limit`` of them.

    A checkpoint is written into ``checkpoint-{step}.tmp``; its training state goes in last, everything is
    flushed to disk, and only then is the folder renamed to ``checkpoint-{step}`` (an atomic rename). A run killed
    while saving leaves a ``.tmp`` folder, which nothing mistakes for a checkpoint and the next run deletes.
    Old checkpoints are renamed to ``.trash`` before being deleted, for the same reason.

    Checkpoints are ordered by the run that wrote them, then by step: each manager (one per run) takes the
    generation after the highest one in the folder. So after resuming from an earlier checkpoint (say step 4 of a
    run that went on to step 8), the new run's checkpoints are the newest: "latest" finds them, and rotation deletes
    the older run's checkpoints (4, then 8) before any of them. The order lives in the training states, so copying
    a folder keeps it.

    The folders are made, renamed and rotated by the main process; with ``node_local``, by the main process of every
    node, each in its own copy of ``output_dir`` (see `open_checkpoints`).
    """

    def __init__(self, output_dir: str | os.PathLike, total_limit: int | None = None, *, node_local: bool = False):
        self.output_dir = Path(output_dir)
        self.total_limit = total_limit
        self.node_local = node_local
        self.generation = 1 + max((_generation(p) for p in self.complete()), default=-1)

    def writes(self, accelerator) -> bool:
        """Whether this process makes, renames and rotates the checkpoint folders."""
        return accelerator.is_local_main_process if self.node_local else accelerator.is_main_process

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first: by the generation of the run that wrote them, then by step."""
        if not self.output_dir.is_dir():
            return []
        found = [p for p in self.output_dir.iterdir() if is_complete_checkpoint(p)]
        return sorted(found, key=lambda path: (_generation(path), checkpoint_step(path)))

    def latest(self) -> Path | None:
        complete = self.complete()
        return complete[-1] if complete else None

    def resolve(self, resume_from_checkpoint: str | None) -> Path | None:
        """``None`` -> None; ``"latest"`` -> the newest complete checkpoint or None; a path -> that checkpoint.

        Raises:
            FileNotFoundError: the path is not a complete checkpoint.
        """
        if resume_from_checkpoint is None:
            return None
        if resume_from_checkpoint == "latest":
            return self.latest()
        path = Path(resume_from_checkpoint)
        if not is_complete_checkpoint(path):
            raise FileNotFoundError(f"{str(path)!r} is not a complete checkpoint folder")
        return path

    def remove_partial(self) -> list[Path]:
        """Delete ``.tmp`` / ``.trash`` leftovers of interrupted saves and deletions; returns what was removed."""
        removed = []
        if self.output_dir.is_dir():
            for path in self.output_dir.iterdir():
                if path.name.startswith(CHECKPOINT_PREFIX) and path.name.endswith(_PARTIAL_SUFFIXES):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed

    def save(self, accelerator, state: TrainingState, extra_files: dict[str, str] | None = None) -> Path:
        """Save the accelerator's state plus ``state`` as ``checkpoint-{state.global_step}``; call on every process.

        Returns the final path. Rotates old checkpoints when a limit is set.

        The save runs in three phases (make the ``.tmp`` folder; every process writes its part; the training state,
        flush and rename). After each, the processes agree on whether all of them succeeded, so a failure on one
        (its disk full, a node-local folder read-only) stops every process with the error instead of leaving the
        others waiting at a barrier forever. (A failure inside a collective of ``accelerator.save_state`` itself,
        e.g. FSDP gathering a state dict, is beyond this: torch.distributed's own timeout ends that one.)

        Raises:
            CheckpointWriteError: the save failed on this or another process (full disk, quota, read-only folder);
                the ``.tmp`` folder is gone and the previous checkpoints are as they were.
        """
        final = self.output_dir / f"{CHECKPOINT_PREFIX}{state.global_step}"
        temporary = final.with_name(final.name + ".tmp")
        writes = self.writes(accelerator)

        def make_folder() -> None:
            if writes:
                shutil.rmtree(temporary, ignore_errors=True)
                temporary.mkdir(parents=True)

        def write_parts() -> None:
            accelerator.save_state(str(temporary))
            if state.data_position is not None:
                name = DATA_POSITION_FILE.format(process=accelerator.process_index)
                (temporary / name).write_text(json.dumps(state.data_position) + "\n", encoding="utf-8")

        def finish() -> None:
            if writes:
                for name, text in (extra_files or {}).items():
                    (temporary / name).write_text(text, encoding="utf-8")
                written = dataclasses.replace(state, generation=self.generation)
                (temporary / TRAINING_STATE_FILE).write_text(written.to_json(), encoding="utf-8")
                _fsync_tree(temporary)
                if final.exists():  # the same step saved before (e.g. a restarted run): replace it
                    self._discard(final)
                os.replace(temporary, final)
                _fsync_dir(self.output_dir)

        for phase in (make_folder, write_parts, finish):
            error = None
            try:
                phase()
            except BaseException as caught:  # a full disk, or a second Ctrl-C: leave no partial checkpoint behind
                if not isinstance(caught, Exception):
                    if writes:
                        shutil.rmtree(temporary, ignore_errors=True)
                    raise
                error = caught  # OSError, or how safetensors / torch.save report a failed write (removed below)
            self._stop_unless_all_succeeded(accelerator, final, error, temporary if writes else None)
        if writes:
            self.rotate()
        accelerator.wait_for_everyone()
        return final

    def _stop_unless_all_succeeded(
        self, accelerator, final: Path, error: Exception | None, temporary: Path | None = None
    ) -> None:
        """Every process's verdict on a save phase; raises `CheckpointWriteError` on all of them if any failed.

        ``error``: this process's failure, or None; ``temporary``: the ``.tmp`` folder this process removes when any
        process failed (None where it writes no folder).
        """
        failed = [int(error is not None)]
        if accelerator.num_processes > 1:
            import torch

            verdicts = accelerator.gather(torch.tensor(failed, device=accelerator.device))
            failed = verdicts.tolist()
        if not any(failed):
            return
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        where = f"{final.name} into {str(self.output_dir)!r}"
        if error is not None:
            cause = " ".join(str(error).split()) or type(error).__name__
        else:
            ranks = ", ".join(str(rank) for rank, flag in enumerate(failed) if flag)
            cause = f"process {ranks} failed to write its part (its own error says why)"
        raise CheckpointWriteError(f"could not write {where}: {cause}") from error

    def rotate(self) -> list[Path]:
        """Delete the oldest complete checkpoints beyond ``total_limit``; returns the deleted paths."""
        if self.total_limit is None:
            return []
        complete = self.complete()
        excess = complete[: max(0, len(complete) - self.total_limit)]
        for path in excess:
            self._discard(path)
        if excess:
            logger.info("removed %d old checkpoint(s): %s", len(excess), ", ".join(p.name for p in excess))
        return excess

    @staticmethod
    def _discard(path: Path) -> None:
        trash = path.with_name(path.name + ".trash")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _generation(checkpoint: Path) -> int:
    """The generation recorded in a complete checkpoint (0 for ones saved before generations, or unreadable)."""
    try:
        return int(load_training_state(checkpoint).generation)
    except (OSError, ValueError, TypeError):
        return 0


def output_dir_is_shared(accelerator, folder: str | os.PathLike) -> bool:
    """Whether all processes see ``folder`` as one folder: one machine, or a filesystem shared by the nodes (NFS,
    Lustre, ...). The same answer on every process; call on every process.

    The main process creates the folder and an empty file of a random name in it, and every process looks for
    that file. (A new random name each time: no network-filesystem client can hold a cached "absent" for it.)
    """
    if accelerator.num_processes == 1:
        return True
    from accelerate.utils import broadcast_object_list, gather_object

    name = [f".shared-folder-probe-{secrets.token_hex(8)}" if accelerator.is_main_process else None]
    probe = Path(folder) / broadcast_object_list(name)[0]
    if accelerator.is_main_process:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
    accelerator.wait_for_everyone()
    seen = gather_object([probe.is_file()])
    if accelerator.is_main_process:
        probe.unlink()
    return all(seen)


def engine_name(accelerator) -> str:
    """What wrote a checkpoint's model and optimizer files, which only the same engine reads back: ``"fsdp"``
    (sharded, torch.distributed.checkpoint), ``"deepspeed"`` (DeepSpeed's own layout) or ``"ddp"`` (one copy:
    one process or data parallel)."""
    return {"FSDP": "fsdp", "DEEPSPEED": "deepspeed"}.get(accelerator.distributed_type.value, "ddp")


def open_checkpoints(accelerator, output_dir: str | os.PathLike, total_limit: int | None = None) -> CheckpointManager:
    """The `CheckpointManager` of a run, after making ``output_dir`` and deleting what interrupted saves left in it;
    call on every process.

    Multi-node runs: an ``output_dir`` on a filesystem every node shares is written once, by the main process.
    Where every node sees a folder of its own (node-local disks; `output_dir_is_shared`), each node keeps a full copy
    of every checkpoint, written by its main process (Accelerate's ``save_on_each_node``), so that every process
    resumes from its own node's copy; data parallelism only, as FSDP's and DeepSpeed's checkpoints are sharded: each
    process writes its part, and resuming reads parts other nodes wrote. Those exit with a one-line error here.
    The final model folder, sample grids and logs are written by the main process, on its node.
    """
    node_local = not output_dir_is_shared(accelerator, output_dir)
    if node_local and engine_name(accelerator) != "ddp":
        raise SystemExit(
            f"{_prog()}: error: --output_dir {str(output_dir)!r} is not one folder for all nodes (each node sees its "
            f"own), and the {engine_name(accelerator)} checkpoints are sharded across the processes of all nodes: "
            "put --output_dir on a filesystem all nodes share (NFS, Lustre, ...)"
        )
    accelerator.project_configuration.save_on_each_node = node_local
    checkpoints = CheckpointManager(output_dir, total_limit, node_local=node_local)
    if checkpoints.writes(accelerator):
        os.makedirs(output_dir, exist_ok=True)
        if node_local:
            logger.warning(
                "--output_dir %r is local to each node: every node keeps its own copy of the checkpoints; the "
                "model folder is written on the main node only",
                str(output_dir),
            )
        for path in checkpoints.remove_partial():
            logger.info("removed the unfinished %s of an interrupted run", path.name)
    accelerator.wait_for_everyone()
    return checkpoints


def resume_point(accelerator, checkpoints: CheckpointManager, resume_from_checkpoint: str | None) -> Path | None:
    """`CheckpointManager.resolve` on every process, checked before anything is loaded; call on every process.

    Exits with a one-line error where the processes found different checkpoints (node-local copies that differ:
    a node's disk replaced, a save that failed on one node) or where the checkpoint was written by another engine
    (`engine_name`; its files cannot be read by this one).
    """
    from accelerate.utils import gather_object

    path = checkpoints.resolve(resume_from_checkpoint)
    found = "no checkpoint" if path is None else f"{path.name} of run {_generation(path)}"
    seen = sorted(set(gather_object([found]))) if accelerator.num_processes > 1 else [found]
    if len(seen) > 1:
        raise SystemExit(
            f"{_prog()}: error: --resume_from_checkpoint {resume_from_checkpoint} finds different checkpoints on "
            f"different nodes ({', '.join(seen)}): make every node's copy of {str(checkpoints.output_dir)!r} the "
            "same, or give a checkpoint path"
        )
    if path is not None:
        written_by = load_training_state(path).run.get("engine", "ddp")
        if written_by != engine_name(accelerator):
            raise SystemExit(
                f"{_prog()}: error: {str(path)!r} was written by {written_by} and this run uses "
                f"{engine_name(accelerator)}: resume with the accelerate config that wrote it"
            )
    return path


def load_training_state(checkpoint: str | os.PathLike, process_index: int = 0) -> TrainingState:
    """The training state of a checkpoint, with the data position of process ``process_index`` if it saved one."""
    state = TrainingState.from_json((Path(checkpoint) / TRAINING_STATE_FILE).read_text(encoding="utf-8"))
    position = Path(checkpoint) / DATA_POSITION_FILE.format(process=process_index)
    if position.is_file():
        state.data_position = json.loads(position.read_text(encoding="utf-8"))
    return state


def warn_on_run_mismatch(saved: dict, current: dict) -> list[str]:
    """Settings that differ between the checkpoint's run and this one (they break exact resumption); logged."""
    differences = [f"{k}: {saved[k]!r} -> {current.get(k)!r}" for k in sorted(saved) if saved[k] != current.get(k)]
    if differences:
        logger.warning("resuming with different settings; the run will not be exact: %s", "; ".join(differences))
    return differences
