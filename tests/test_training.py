"""lemart_hf.training and lemart_hf.data.photos: the pieces the example scripts are built from."""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf.data.photos import EpochShuffleSampler, PhotoDataset, collate_photos, list_images, load_crop
from lemart_hf.data.streaming import StreamingPhotos
from lemart_hf.lemart import SkippedImageWarning
from lemart_hf.training import (
    TRAINING_STATE_FILE,
    CheckpointManager,
    HarmonizationTrainingPairs,
    NonFiniteLossError,
    StopRequest,
    TrainingClock,
    TrainingState,
    align_engine_settings,
    build_optimizer,
    check_launch,
    checkpoint_step,
    collate_pairs,
    exit_on_non_finite_loss,
    is_complete_checkpoint,
    make_sample_grid,
    open_checkpoints,
    resolve_model_config,
    resolve_report_to,
    resume_point,
    save_final_model,
    step_seed,
)


class FakeAccelerator:
    """What CheckpointManager uses of an Accelerator: one process that writes a small state (by default the main
    process; ``is_main_process=False``: the main process of another node)."""

    is_local_main_process = True
    num_processes = 1

    def __init__(self, fail: bool = False, is_main_process: bool = True):
        self.fail = fail
        self.is_main_process = is_main_process

    def wait_for_everyone(self):
        pass

    def save_state(self, output_dir):
        Path(output_dir).mkdir(parents=True, exist_ok=True)  # as Accelerate does, on every process
        (Path(output_dir) / "model.safetensors").write_bytes(b"weights")
        if self.fail:
            raise KeyboardInterrupt("killed while saving")
        (Path(output_dir) / "optimizer.bin").write_bytes(b"state")


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoints_are_atomic_rotated_and_resolved(tmp_path):
    manager = CheckpointManager(tmp_path, total_limit=2)
    for step in (1, 2, 3):
        path = manager.save(FakeAccelerator(), TrainingState(global_step=step, epoch=0, batches_in_epoch=step))
        assert path == tmp_path / f"checkpoint-{step}" and is_complete_checkpoint(path)
    assert [p.name for p in manager.complete()] == ["checkpoint-2", "checkpoint-3"]  # checkpoint-1 rotated out
    assert manager.resolve("latest") == tmp_path / "checkpoint-3"
    assert manager.resolve(str(tmp_path / "checkpoint-2")) == tmp_path / "checkpoint-2"
    assert manager.resolve(None) is None
    state = TrainingState.from_json((tmp_path / "checkpoint-3" / TRAINING_STATE_FILE).read_text())
    assert state.global_step == 3 and state.batches_in_epoch == 3
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.trash"))


def test_a_kill_during_a_save_leaves_no_checkpoint_that_looks_complete(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(FakeAccelerator(), TrainingState(global_step=5))
    with pytest.raises(KeyboardInterrupt):  # an interrupted save removes its partial folder itself
        manager.save(FakeAccelerator(fail=True), TrainingState(global_step=10))
    assert not (tmp_path / "checkpoint-10.tmp").exists() and not (tmp_path / "checkpoint-10").exists()
    (tmp_path / "checkpoint-10.tmp").mkdir()  # what a kill -9 during the save leaves
    (tmp_path / "checkpoint-10.tmp" / "model.safetensors").write_bytes(b"")
    assert manager.resolve("latest") == tmp_path / "checkpoint-5"
    # A folder with the right name but no training state (e.g. half-copied by hand) is not complete either.
    (tmp_path / "checkpoint-20").mkdir()
    (tmp_path / "checkpoint-20" / "model.safetensors").write_bytes(b"")
    assert manager.resolve("latest") == tmp_path / "checkpoint-5"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        manager.resolve(str(tmp_path / "checkpoint-20"))
    assert [p.name for p in manager.remove_partial()] == ["checkpoint-10.tmp"]
    assert checkpoint_step("checkpoint-10.tmp") is None and checkpoint_step("x/checkpoint-7") == 7


def test_checkpoints_of_a_run_resumed_from_an_earlier_step_are_the_newest(tmp_path):
    first_run = CheckpointManager(tmp_path)
    for step in (4, 8):
        first_run.save(FakeAccelerator(), TrainingState(global_step=step))
    # Resumed from checkpoint-4: the old checkpoint-8 belongs to the abandoned continuation.
    resumed = CheckpointManager(tmp_path, total_limit=2)
    resumed.save(FakeAccelerator(), TrainingState(global_step=5))
    assert resumed.resolve("latest") == tmp_path / "checkpoint-5"
    assert [p.name for p in resumed.complete()] == ["checkpoint-8", "checkpoint-5"]  # checkpoint-4 rotated out
    resumed.save(FakeAccelerator(), TrainingState(global_step=6))
    assert [p.name for p in resumed.complete()] == ["checkpoint-5", "checkpoint-6"]
    assert CheckpointManager(tmp_path).resolve("latest") == tmp_path / "checkpoint-6"


@pytest.mark.parametrize(
    "world_size, num_processes, mixed_precision, message",
    [
        ("2", 1, "no", "launched as 2 processes, but Accelerate runs each of them alone"),
        ("1", 1, "fp16", "fp16 mixed precision needs a GPU"),
        ("2", 2, "bf16", None),
    ],
)
def test_launches_accelerate_would_quietly_change_are_errors(
    monkeypatch, world_size, num_processes, mixed_precision, message
):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    accelerator = SimpleNamespace(
        num_processes=num_processes, mixed_precision=mixed_precision, device=torch.device("cpu")
    )
    if message is None:
        check_launch(accelerator)
        return
    with pytest.raises(SystemExit, match=message):
        check_launch(accelerator)


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, caplog, fast_bf16):
    import lemart_hf.training.accelerator as launch

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(launch, "cpu_has_fast_bf16", lambda: fast_bf16)
    accelerator = SimpleNamespace(num_processes=1, mixed_precision="bf16", device=torch.device("cpu"))
    with caplog.at_level("WARNING", logger=launch.__name__):
        check_launch(accelerator)
    warned = [r.getMessage() for r in caplog.records if "AVX512-BF16" in r.getMessage()]
    assert len(warned) == (0 if fast_bf16 else 1)


def test_checkpoints_on_node_local_disks_are_written_by_every_nodes_main_process(tmp_path):
    """The main process of node 1, on its own disk: with ``node_local`` it writes complete checkpoints; without
    (one shared folder assumed), its folder keeps only an unfinished ``.tmp`` (what the global main process would
    have renamed, on another disk)."""
    node_1 = FakeAccelerator(is_main_process=False)
    CheckpointManager(tmp_path / "local", node_local=True).save(node_1, TrainingState(global_step=2))
    assert is_complete_checkpoint(tmp_path / "local" / "checkpoint-2")
    CheckpointManager(tmp_path / "shared").save(node_1, TrainingState(global_step=2))
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["checkpoint-2.tmp"]


def run_accelerator(distributed_type: str = "NO", num_processes: int = 1) -> SimpleNamespace:
    """What open_checkpoints and resume_point use of an Accelerator, for one process of a run."""
    from accelerate.utils import DistributedType

    return SimpleNamespace(
        num_processes=num_processes,
        distributed_type=DistributedType(distributed_type),
        is_main_process=True,
        is_local_main_process=True,
        project_configuration=SimpleNamespace(save_on_each_node=False),
        wait_for_everyone=lambda: None,
    )


def test_open_checkpoints_makes_the_folder_and_handles_node_local_disks(tmp_path, monkeypatch):
    (tmp_path / "run" / "checkpoint-3.tmp").mkdir(parents=True)  # an interrupted save
    accelerator = run_accelerator()
    checkpoints = open_checkpoints(accelerator, tmp_path / "run", total_limit=2)
    assert not checkpoints.node_local and not accelerator.project_configuration.save_on_each_node
    assert list((tmp_path / "run").iterdir()) == [] and checkpoints.total_limit == 2

    # Each node sees a folder of its own: DDP keeps a copy per node, the sharded engines cannot resume from that.
    monkeypatch.setattr("lemart_hf.training.checkpoints.output_dir_is_shared", lambda accelerator, folder: False)
    accelerator = run_accelerator("MULTI_GPU", num_processes=16)
    assert open_checkpoints(accelerator, tmp_path / "local").node_local
    assert accelerator.project_configuration.save_on_each_node
    for engine, name in (("FSDP", "fsdp"), ("DEEPSPEED", "deepspeed")):
        with pytest.raises(SystemExit, match=f"is not one folder for all nodes .* the {name} checkpoints are sharded"):
            open_checkpoints(run_accelerator(engine, num_processes=16), tmp_path / "local")


def test_resuming_needs_the_engine_that_wrote_the_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(FakeAccelerator(), TrainingState(global_step=2, run={"engine": "fsdp"}))
    assert resume_point(run_accelerator("FSDP"), manager, "latest") == tmp_path / "checkpoint-2"
    with pytest.raises(SystemExit, match="checkpoint-2' was written by fsdp and this run uses deepspeed"):
        resume_point(run_accelerator("DEEPSPEED"), manager, "latest")
    manager.save(FakeAccelerator(), TrainingState(global_step=4))  # written before engines were recorded: DDP
    assert resume_point(run_accelerator("MULTI_CPU"), manager, "latest") == tmp_path / "checkpoint-4"
    assert resume_point(run_accelerator(), manager, None) is None


def engine_arguments(**overrides) -> argparse.Namespace:
    return argparse.Namespace(
        **{"train_batch_size": 4, "gradient_accumulation_steps": 2, "max_grad_norm": 1.0, **overrides}
    )


def deepspeed_accelerator(config: dict | None = None, accumulation: int = 2) -> SimpleNamespace:
    """An Accelerator under DeepSpeed as `make_accelerator` sees it: a real DeepSpeedPlugin (deepspeed itself is not
    needed to build one), from Accelerate's generated config ("auto" entries) or from a config file's ``config``."""
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    plugin = DeepSpeedPlugin(hf_ds_config=config) if config is not None else DeepSpeedPlugin(zero_stage=2)
    return SimpleNamespace(
        gradient_accumulation_steps=accumulation,
        distributed_type=DistributedType.DEEPSPEED,
        state=SimpleNamespace(deepspeed_plugin=plugin),
    )


@pytest.fixture
def no_launcher_settings(monkeypatch):
    for name in (
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS",
        "ACCELERATE_GRADIENT_CLIPPING",
        "ACCELERATE_DEEPSPEED_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_deepspeed_auto_entries_take_the_script_arguments(no_launcher_settings):
    """Accelerate's generated DeepSpeed config leaves the micro-batch "auto", which `Accelerator.prepare` can only
    fill from a DataLoader prepared with the model; the script's arguments fill it (and accumulation, clipping)."""
    accelerator = deepspeed_accelerator()
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["gradient_clipping"] == "auto"
    align_engine_settings(accelerator, engine_arguments(max_grad_norm=0.0))
    assert config["train_micro_batch_size_per_gpu"] == 4
    assert config["gradient_accumulation_steps"] == 2 and config["gradient_clipping"] == 0.0
    # A config file's own values that agree with the arguments are kept.
    agreeing = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "zero_optimization": {"stage": 3},
    }
    align_engine_settings(deepspeed_accelerator(agreeing), engine_arguments())


def test_engine_settings_that_contradict_the_arguments_are_one_line_errors(no_launcher_settings):
    from accelerate.utils import DistributedType

    launched = SimpleNamespace(gradient_accumulation_steps=2, distributed_type=DistributedType.MULTI_GPU)
    with pytest.raises(SystemExit, match="--gradient_accumulation_steps is 1 but the launcher set 2 "):
        align_engine_settings(launched, engine_arguments(gradient_accumulation_steps=1))
    align_engine_settings(launched, engine_arguments())

    config = {"train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0.5, "zero_optimization": {"stage": 2}}
    with pytest.raises(SystemExit) as stopped:
        align_engine_settings(deepspeed_accelerator(config), engine_arguments())
    message = str(stopped.value)
    assert "--train_batch_size is 4 but the DeepSpeed config's train_micro_batch_size_per_gpu is 8" in message
    assert "--max_grad_norm is 1.0 but the DeepSpeed config's gradient_clipping is 0.5" in message
    assert "\n" not in message


class GatheringAccelerator:
    """What save_final_model uses of an Accelerator, for one process of a sharded run: `get_state_dict` returns the
    full weights ``gathered`` (counting the calls), `unwrap_model` the model as FSDP2 leaves it."""

    def __init__(self, gathered: dict, is_main_process: bool):
        self.gathered, self.is_main_process, self.calls = gathered, is_main_process, 0

    def wait_for_everyone(self):
        pass

    def get_state_dict(self, model):
        self.calls += 1
        return self.gathered

    def unwrap_model(self, model):
        return model


def test_final_model_is_gathered_on_every_process_and_saved_as_the_plain_model(tmp_path):
    """The exported weights are `get_state_dict`'s (the full ones, not a process's shards), called on every process;
    the folder is written by the main process from the model's own class, not FSDP2's subclass of it."""
    from lemart_hf import SwinIHForHarmonization, SwinIHImageProcessor
    from lemart_hf.hub import check_hub_folder

    config = resolve_model_config("swinih-tiny")
    sharded_class = type("FSDPSwinIHForHarmonization", (SwinIHForHarmonization,), {})  # what fully_shard makes
    model = sharded_class(config)
    gathered = {name: tensor + 1 for name, tensor in model.state_dict().items()}
    processor = SwinIHImageProcessor(size={"height": 64, "width": 64})

    other = GatheringAccelerator(gathered, is_main_process=False)
    save_final_model(other, model, processor, tmp_path / "other", "card")
    assert other.calls == 1 and not (tmp_path / "other").exists()

    main = GatheringAccelerator(gathered, is_main_process=True)
    save_final_model(main, model, processor, tmp_path / "main", "---\nlicense: other\n---\ncard")
    assert main.calls == 1
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "main" / "model.safetensors")
    assert all(torch.equal(saved[name], gathered[name]) for name in saved)
    auto_map = json.loads((tmp_path / "main" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageToImage"] == "modeling_swinih.SwinIHForHarmonization"
    assert not list((tmp_path / "main").glob("_fsdp*.py")) and check_hub_folder(tmp_path / "main") == []


def test_a_non_finite_loss_saves_over_a_same_step_checkpoint_of_an_older_run(tmp_path):
    CheckpointManager(tmp_path).save(FakeAccelerator(), TrainingState(global_step=6, images_seen=1))  # abandoned
    resumed = CheckpointManager(tmp_path)
    last_good = TrainingState(global_step=6, images_seen=2)
    accelerator = FakeAccelerator()
    accelerator.end_training = lambda: None
    with pytest.raises(SystemExit, match="checkpoint-6"):
        exit_on_non_finite_loss(NonFiniteLossError("the loss is nan"), accelerator, resumed, last_good)
    assert json.loads((tmp_path / "checkpoint-6" / TRAINING_STATE_FILE).read_text())["images_seen"] == 2


def test_stop_request_records_the_first_signal_and_restores_handlers(monkeypatch):
    import signal

    before = signal.getsignal(signal.SIGINT)
    with StopRequest(None) as stop:
        assert not stop.requested()
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested() and stop.reason() == "SIGTERM received"
        assert signal.getsignal(signal.SIGINT) is before  # a second signal, of either kind, acts as usual
    assert signal.getsignal(signal.SIGINT) is before
    assert StopRequest(1e-9).reason().startswith("time budget")


def test_latest_without_checkpoints_starts_afresh(tmp_path):
    assert CheckpointManager(tmp_path / "new").resolve("latest") is None


def test_saving_a_step_again_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(FakeAccelerator(), TrainingState(global_step=4, images_seen=1))
    manager.save(FakeAccelerator(), TrainingState(global_step=4, images_seen=2))
    assert json.loads((tmp_path / "checkpoint-4" / TRAINING_STATE_FILE).read_text())["images_seen"] == 2


def test_training_clock_adds_step_times_leaves_out_validation_and_survives_a_checkpoint(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("lemart_hf.training.step.time.perf_counter", lambda: now[0])
    state = TrainingState(train_seconds=50.0)  # as resumed from a checkpoint
    clock = TrainingClock(state)
    now[0] += 2.0
    clock.step()
    with clock.paused():
        now[0] += 30.0  # validation
    now[0] += 3.0
    clock.step()
    assert state.train_seconds == 55.0
    assert TrainingState.from_json(state.to_json()).train_seconds == 55.0
    assert TrainingState.from_json('{"global_step": 3}').train_seconds == 0.0  # a checkpoint written before the clock


# ----------------------------------------------------------------------------------------------------------
# Reproducibility: samplers, crops, step seeds


def test_epoch_shuffle_sampler_is_a_function_of_seed_and_epoch():
    sampler = EpochShuffleSampler(5, seed=3, repeats=2)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10, 20))
    assert [k % 10 for k in first] != [k % 10 for k in second]  # reshuffled
    replay = EpochShuffleSampler(5, seed=3, repeats=2)
    replay.set_epoch(1)
    assert list(replay) == second
    other = EpochShuffleSampler(5, seed=4, repeats=2)
    other.set_epoch(1)
    assert list(other) != second


def _photo(path: Path, size=(60, 40), seed=0, mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def test_photo_crops_depend_only_on_seed_and_key(tmp_path):
    paths = [str(_photo(tmp_path / f"{i}.png", seed=i)) for i in range(3)]
    dataset = PhotoDataset(paths, 16, seed=1)
    assert dataset[7]["pixel_values"].shape == (3, 16, 16) and dataset[7]["pixel_values"].dtype == torch.uint8
    assert torch.equal(dataset[7]["pixel_values"], PhotoDataset(paths, 16, seed=1)[7]["pixel_values"])
    assert not torch.equal(dataset[7]["pixel_values"], dataset[4]["pixel_values"])  # same photo, another key
    assert not torch.equal(dataset[7]["pixel_values"], PhotoDataset(paths, 16, seed=2)[7]["pixel_values"])
    batch = collate_photos([dataset[k] for k in (0, 5)])
    assert batch["pixel_values"].shape == (2, 3, 16, 16) and batch["key"].tolist() == [0, 5]
    # Validation: the centred largest square, no randomness.
    centred = PhotoDataset(paths, 16, train=False)
    assert torch.equal(centred[0]["pixel_values"], centred[3]["pixel_values"])


def test_photo_dataset_reads_a_datasets_image_column(tmp_path):
    import datasets

    paths = [str(_photo(tmp_path / f"{i}.jpg", seed=i)) for i in range(2)]
    table = datasets.Dataset.from_dict({"img": paths}).cast_column("img", datasets.Image())
    from_table = PhotoDataset(table, 16, seed=0, image_column="img")
    from_paths = PhotoDataset(paths, 16, seed=0)
    assert torch.equal(from_table[3]["pixel_values"], from_paths[3]["pixel_values"])
    with pytest.raises(ValueError, match="image column"):
        PhotoDataset(table, 16, image_column="image")


def _truncated_jpeg(path: Path) -> Path:
    _photo(path.with_suffix(".full.jpg"), size=(64, 64))
    data = path.with_suffix(".full.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    path.with_suffix(".full.jpg").unlink()
    return path


def test_training_photos_replace_an_unreadable_one_and_validation_names_it(tmp_path):
    paths = [str(_photo(tmp_path / "0.png", seed=0)), str(_truncated_jpeg(tmp_path / "1.jpg"))]
    paths.append(str(_photo(tmp_path / "2.png", seed=2)))
    dataset = PhotoDataset(paths, 16, seed=1)
    with pytest.warns(SkippedImageWarning, match="cannot read photo 1 .*using photo 2 instead"):
        replaced = dataset[1]
    assert replaced["key"] == 1 and replaced["pixel_values"].shape == (3, 16, 16)
    with pytest.warns(SkippedImageWarning):
        assert torch.equal(PhotoDataset(paths, 16, seed=1)[1]["pixel_values"], replaced["pixel_values"])  # seeded
    with pytest.raises(ValueError, match="cannot read photo 1"):
        PhotoDataset(paths, 16, train=False)[1]


def test_streamed_photos_skip_an_unreadable_one_with_a_counted_warning(tmp_path):
    import datasets

    paths = [str(_photo(tmp_path / "0.png")), str(_truncated_jpeg(tmp_path / "1.jpg")), str(_photo(tmp_path / "2.png"))]
    stream = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image()).to_iterable_dataset()
    photos = StreamingPhotos(stream, 16, shuffle_buffer_size=1)
    with pytest.warns(SkippedImageWarning, match="1 skipped so far"):
        rows = list(islice(photos, 2))  # the stream's first epoch (it goes on with the next)
    assert [row["position"]["epoch"] for row in rows] == [0, 0] and photos.num_skipped == 1


def test_load_crop_handles_modes_orientation_and_big_jpegs(tmp_path):
    for mode in ("L", "RGBA", "P"):
        assert load_crop(_photo(tmp_path / f"m.{mode}.png", mode=mode), 8).shape == (3, 8, 8)
    # EXIF orientation 6 (rotate 90 degrees): a 60x40 file is a 40x60 upright photo; the centre crop follows it.
    image = Image.new("RGB", (60, 40), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 40))  # left third blue: after rotating it is the top third
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    crop = load_crop(tmp_path / "rotated.jpg", 40, generator=None)
    # Upright, the blue third is the top band: the centred square (rows 10-50 of 60) starts with 10 blue rows.
    assert crop[2, 3, 20] > 200 and crop[0, 3, 20] < 60  # top middle: blue
    assert crop[0, 20, 6] > 200 and crop[2, 20, 6] < 60  # left middle: red (unrotated, it would be blue)
    # A big JPEG takes the draft path (reduced decode) and gives the same picture as a full decode.
    big = Image.fromarray(
        np.kron(
            np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((100, 100, 1), dtype=np.uint8)
        )
    )
    big.save(tmp_path / "big.jpg", quality=95)
    fast = load_crop(tmp_path / "big.jpg", 32, generator=None).float()
    full = torch.from_numpy(np.array(big.resize((32, 32), Image.BILINEAR))).permute(2, 0, 1).float()
    assert (fast - full).abs().mean() < 6


def test_list_images_skips_unreadable_files(tmp_path):
    _photo(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    _photo(tmp_path / "sub" / "b.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.warns(SkippedImageWarning, match="broken.jpg"):
        found = list_images(tmp_path)
    assert [Path(p).name for p in found] == ["a.png", "b.jpg"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        list_images(tmp_path / "empty")


def test_step_seeds_are_deterministic_and_distinct():
    assert step_seed(0, 5, 1) == step_seed(0, 5, 1)
    seeds = {step_seed(s, n, p) for s in range(3) for n in range(50) for p in range(2)}
    assert len(seeds) == 300


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning pairs


def test_training_pairs_crop_composite_mask_and_real_alike():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 200, (40, 64, 3), dtype=np.uint8)
    mask = np.zeros((40, 64), np.uint8)
    mask[10:30, 16:48] = 255
    composite = np.where(mask[..., None] > 0, real + 50, real).astype(np.uint8)
    rows = [
        {
            "composite": Image.fromarray(composite),
            "mask": Image.fromarray(mask),
            "real": Image.fromarray(real),
            "name": "a_1_1.jpg",
        }
    ]
    pairs = HarmonizationTrainingPairs(rows, 24, seed=0)
    for key in range(6):
        sample = pairs[key]
        difference = (sample["composite"] - sample["real"]).abs().mean(0)
        inside, outside = sample["mask"][0] > 0.5, sample["mask"][0] < 0.5
        if inside.any():
            assert difference[inside].mean() > 0.15  # the +50 shift lies under the mask ...
        if outside.any():
            assert difference[outside].mean() < 0.03  # ... and nowhere else: one crop for all three
        assert set(sample["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(pairs[3]["composite"], HarmonizationTrainingPairs(rows, 24, seed=0)[3]["composite"])
    batch = collate_pairs([pairs[0], pairs[1]])
    assert batch["pixel_values"].shape == (2, 4, 24, 24) and batch["labels"].shape == (2, 3, 24, 24)


# ----------------------------------------------------------------------------------------------------------
# Model, optimiser, trackers


def test_resolve_model_config_from_preset_file_and_folder(tmp_path):
    assert resolve_model_config("swinih-tiny").embed_dim == 48
    (tmp_path / "c.json").write_text(json.dumps({"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4]}))
    assert resolve_model_config(str(tmp_path / "c.json")).embed_dim == 16
    resolve_model_config("swinih-tiny").save_pretrained(tmp_path / "folder")
    assert resolve_model_config(str(tmp_path / "folder")).window_size == 8
    with pytest.raises(ValueError, match="swinih-tiny"):
        resolve_model_config("swinih-huge")


def test_optimizer_has_paper_defaults_and_no_decay_on_norms_and_biases():
    from lemart_hf import SwinIHConfig, SwinIHForHarmonization

    model = SwinIHForHarmonization(SwinIHConfig(embed_dim=8, depths=[1, 1, 1], num_heads=[1, 1, 1], window_size=4))
    args = argparse.Namespace(adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, adam_weight_decay=0.05)
    optimizer = build_optimizer(model, args, 1e-3)
    decay, no_decay = optimizer.param_groups
    assert (
        optimizer.defaults["betas"] == (0.9, 0.95) and decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0
    )
    assert all(p.ndim > 1 for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("relative_position_bias_table" in names[id(p)] for p in no_decay["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_report_to():
    assert resolve_report_to("none") is None
    assert resolve_report_to("tensorboard") == ["tensorboard"]
    assert resolve_report_to("tensorboard, wandb") == ["tensorboard", "wandb"]


# ----------------------------------------------------------------------------------------------------------
# Sample grids, model card, Hub folder


def test_sample_grid_columns_are_composite_mask_prediction_original():
    def constant(value, channels=3):
        return torch.full((2, channels, 48, 48), value)

    grid = make_sample_grid(constant(0.2), constant(1.0, 1), constant(0.6), constant(0.8), header=True)
    array = np.asarray(grid)
    assert grid.size == (4 * 48 + 3 * 2, 14 + 2 * 48 + 2)  # header strip, 2 rows, 2-pixel gaps
    row = array[14 + 24]
    assert [int(row[24 + column * 50][0]) for column in range(4)] == [51, 255, 153, 204]
    small = make_sample_grid(
        constant(0.2)[:, :, :8, :8],
        constant(1.0, 1)[:, :, :8, :8],
        constant(0.6)[:, :, :8, :8],
        constant(0.8)[:, :, :8, :8],
    )
    assert small.size == (4 * 8 + 6, 2 * 8 + 2)  # tiles too small for labels: no header


def test_command_line_names_the_mixed_precision_the_launcher_set(monkeypatch):
    """A card's command repeats the run: bf16 from `accelerate launch --mixed_precision bf16` becomes a flag."""
    from lemart_hf.training import command_line

    monkeypatch.setattr("sys.argv", ["run_pretrain.py", "--train_dir", "my photos"])
    assert command_line("examples/run_pretrain.py", "bf16") == (
        "accelerate launch --mixed_precision bf16 examples/run_pretrain.py --train_dir 'my photos'"
    )
    assert command_line("examples/run_pretrain.py") == "accelerate launch examples/run_pretrain.py --train_dir 'my photos'"
    monkeypatch.setattr("sys.argv", ["run_pretrain.py", "--mixed_precision=bf16"])
    assert command_line("examples/run_pretrain.py", "bf16") == "accelerate launch examples/run_pretrain.py --mixed_precision=bf16"


def test_a_save_failing_on_one_process_stops_every_process_with_the_error(tmp_path, free_port):
    """Two gloo processes (tests/checkpoint_failure_worker.py): whichever process fails in whichever phase of a save,
    both get a CheckpointWriteError within seconds (none is left at a barrier), the failing one with its cause, the
    other naming it; no .tmp folder remains and the earlier checkpoint is intact."""
    import subprocess
    import sys

    worker = Path(__file__).with_name("checkpoint_failure_worker.py")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(worker), str(tmp_path / "run"), str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {rank: (tmp_path / f"rank{rank}.txt").read_text().splitlines() for rank in (0, 1)}
    for rank, lines in results.items():
        assert lines[0] == "step 1: saved" and len(lines) == 4, lines
        for line, (step, failing) in zip(lines[1:], ((2, 0), (3, 1), (4, 0))):
            assert line.startswith(f"step {step}: CheckpointWriteError: could not write checkpoint-{step} into"), line
            expected = "No space left on device" if rank == failing else f"process {failing} failed"
            assert expected in line, line
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["checkpoint-1"]
    assert (tmp_path / "run" / "checkpoint-1" / TRAINING_STATE_FILE).is_file()
