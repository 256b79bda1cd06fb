"""examples/run_pretrain.py end to end on tiny data: accelerate launch with 1 and 2 processes, exact resumption
after a kill, the output folder, the model card, NaN handling and argument errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One process on the CPU, every launch default given (no warning, no accelerate config file needed).
LAUNCH_1 = ["--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
# Real data parallelism on the CPU: accelerate 1.x runs `--cpu --num_processes 2` as ONE process (its simple
# launcher); torch.distributed's launcher (`--multi_gpu`) on a machine without GPUs gives 2 gloo processes.
LAUNCH_2 = [
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def common_args(tiny_config: str, output_dir: Path) -> list[str]:
    return [
        "--model_config", tiny_config, "--resolution", "32", "--train_batch_size", "2", "--logging_steps", "1",
        "--output_dir", str(output_dir), "--lr_warmup_steps", "1",
    ]  # fmt: skip


def wait_for_checkpoint(process: subprocess.Popen, checkpoint: Path, seconds: float = 240) -> None:
    """Until the running ``process`` has written the complete ``checkpoint`` (its training state lands last)."""
    deadline = time.monotonic() + seconds
    while not (checkpoint / "training_state.json").is_file():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"no {checkpoint.name} within {seconds:g} s"
        time.sleep(0.01)


def read_front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_pretrain_end_to_end_with_accelerate_launch(tmp_path, tiny_config, photo_folder, run_example):
    output_dir = tmp_path / "run"
    args = common_args(tiny_config, output_dir) + [
        "--train_dir", str(photo_folder), "--max_train_steps", "4", "--checkpointing_steps", "1",
        "--checkpoints_total_limit", "2", "--validation_steps", "2", "--num_validation_composites", "4",
        "--dataloader_num_workers", "1", "--report_to", "tensorboard",
    ]  # fmt: skip
    run_example("run_pretrain.py", args, launcher=LAUNCH_1)

    # Checkpoints: every step, the two newest kept, all complete, no leftovers.
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    state = json.loads((output_dir / "checkpoint-4" / "training_state.json").read_text())
    assert state["global_step"] == 4 and state["micro_step"] == 4 and state["images_seen"] == 8

    # The final folder loads with the model class and the Auto classes.
    from transformers import AutoImageProcessor, AutoModelForImageToImage

    import lemart_hf  # noqa: F401  (registers the Auto classes)
    from lemart_hf import SwinIHForHarmonization

    model = SwinIHForHarmonization.from_pretrained(output_dir).eval()
    auto_model = AutoModelForImageToImage.from_pretrained(output_dir)
    processor = AutoImageProcessor.from_pretrained(output_dir)
    assert type(auto_model) is SwinIHForHarmonization
    assert processor.size == {"height": 32, "width": 32}
    inputs = processor(images=torch.rand(3, 40, 50), masks=torch.ones(1, 40, 50))
    with torch.no_grad():
        assert model(pixel_values=inputs["pixel_values"]).harmonized.shape == (1, 3, 32, 32)

    # Model card: front matter with the model-index and validation metrics, the exact command.
    meta = read_front_matter(output_dir / "README.md")
    assert meta["pipeline_tag"] == "image-to-image" and meta["library_name"] == "transformers"
    assert meta["license"] == "other" and "inherit the terms of the images" in (output_dir / "README.md").read_text()
    assert {"image-harmonization", "lemart"} <= set(meta["tags"])
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert set(metrics) == {"psnr", "fpsnr", "mse", "fmse"} and all(math.isfinite(v) for v in metrics.values())
    card = (output_dir / "README.md").read_text()
    assert "examples/run_pretrain.py" in card and "--max_train_steps 4" in card

    # Sample grids: composite | mask | prediction | original, 4 tiles wide.
    assert sorted(p.name for p in (output_dir / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    grid = Image.open(output_dir / "sample_grid.png")
    assert grid.size == (4 * 32 + 3 * 2, 4 * 32 + 3 * 2)

    results = json.loads((output_dir / "train_results.json").read_text())
    assert results["global_step"] == 4 and results["validation"]["step"] == 4
    assert list((output_dir / "logs").rglob("events.out.tfevents*")), "no tensorboard log"

    # A complete hub repository (what --push_to_hub uploads: tests/examples/test_push_to_hub.py).
    from lemart_hf.hub import check_hub_folder

    assert check_hub_folder(output_dir) == []


def test_pretrain_two_processes_on_the_embedded_photos(tmp_path, tiny_config, run_example, free_port):
    """Real data parallelism (2 gloo processes) on the default data: the photos embedded in the [dev] install."""
    pytest.importorskip("skimage")
    output_dir = tmp_path / "ddp"
    args = common_args(tiny_config, output_dir) + [
        "--max_train_steps", "3", "--checkpointing_steps", "2", "--validation_steps", "0",
        "--num_validation_composites", "2", "--dataloader_num_workers", "0", "--report_to", "none",
    ]  # fmt: skip
    result = run_example("run_pretrain.py", args, launcher=LAUNCH_2 + ["--main_process_port", str(free_port())])
    assert "Num processes: 2" in result.stderr + result.stdout
    assert sorted(p.name for p in (output_dir / "checkpoint-2").glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    summary = json.loads((output_dir / "train_results.json").read_text())
    assert summary["num_processes"] == 2 and summary["images_seen"] == 3 * 2 * 2
    from lemart_hf import SwinIHForHarmonization

    SwinIHForHarmonization.from_pretrained(output_dir)


def fsdp_launch(port: int) -> list[str]:
    """`accelerate launch` arguments for 2 gloo processes under examples/accelerate_configs/fsdp.yaml (FSDP2,
    FULL_SHARD, activation checkpointing), through the shim that lets accelerate 1.16 run FSDP on CPUs; the example
    script and its arguments follow."""
    return [
        "--config_file", str(ROOT / "examples" / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "2",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        str(Path(__file__).with_name("fsdp_on_cpu.py")),
    ]  # fmt: skip


def max_difference(folder_a: Path, folder_b: Path) -> float:
    """The largest absolute difference between the weights of two saved models (same tensor names required)."""
    a, b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def without_stochastic_depth(tiny_config: str, folder: Path) -> str:
    path = folder / "no_drop_path.json"
    path.write_text(json.dumps({**json.loads(Path(tiny_config).read_text()), "drop_path_rate": 0.0}))
    return str(path)


def test_fsdp_on_two_cpu_processes_trains_like_one_process_and_resumes(
    tmp_path, tiny_config, photo_folder, run_example, run_in_process, free_port
):
    """FSDP (examples/accelerate_configs/fsdp.yaml) on 2 gloo processes: validation and evaluation forward passes
    on both processes, sharded checkpoints, the exported model gathered from the shards.

    One process with 2 accumulation steps trains on the same batches and the same composites (numbered by
    micro-batch x processes + process), so without stochastic depth (seeded per process) its exported model is the
    FSDP run's to float tolerance. Resuming from the sharded checkpoint-2 ends with the same model again.
    """
    config = without_stochastic_depth(tiny_config, tmp_path)

    def args(output_dir: Path) -> list[str]:
        return common_args(config, output_dir) + [
            "--train_dir", str(photo_folder), "--max_train_steps", "4", "--checkpointing_steps", "2",
            "--validation_steps", "2", "--num_validation_composites", "2", "--dataloader_num_workers", "0",
            "--report_to", "none",
        ]  # fmt: skip

    fsdp, one, resumed = tmp_path / "fsdp", tmp_path / "one", tmp_path / "resumed"
    result = run_example("run_pretrain.py", args(fsdp), launcher=fsdp_launch(free_port()))
    assert "DistributedType.FSDP" in result.stdout + result.stderr
    run_in_process("run_pretrain.py", args(one) + ["--gradient_accumulation_steps", "2"])

    assert (fsdp / "checkpoint-2" / "pytorch_model_fsdp_0" / ".metadata").is_file()  # sharded
    state = json.loads((fsdp / "checkpoint-4" / "training_state.json").read_text())
    assert state["run"]["engine"] == "fsdp" and state["micro_step"] == state["global_step"] == 4
    assert max_difference(fsdp, one) <= 1e-6
    fsdp_summary = json.loads((fsdp / "train_results.json").read_text())
    one_summary = json.loads((one / "train_results.json").read_text())
    assert fsdp_summary["validation"]["psnr"] == pytest.approx(one_summary["validation"]["psnr"], abs=1e-4)
    from lemart_hf.hub import check_hub_folder

    assert check_hub_folder(fsdp) == []  # the model's own code, not FSDP's (FSDP2 changes the model's class)

    run_example(
        "run_pretrain.py",
        args(resumed) + ["--resume_from_checkpoint", str(fsdp / "checkpoint-2")],
        launcher=fsdp_launch(free_port()),
    )
    assert max_difference(resumed, fsdp) <= 1e-6


def test_node_local_output_dirs_keep_a_checkpoint_copy_per_node(
    tmp_path, tiny_config, photo_folder, example_env, free_port
):
    """Two "nodes" (one gloo process each, accelerate launch --num_machines 2 --machine_rank 0 / 1) whose
    --output_dir differ, as node-local disks do: each node's copy holds every checkpoint whole; the model folder is
    on node 0. Copies that disagree stop a resume on every node with one line; copies that agree resume exactly."""
    nodes = [tmp_path / "node0", tmp_path / "node1"]

    def launch(extra: list[str]) -> list[subprocess.CompletedProcess]:
        """Both nodes' launches, side by side; (exit code, stderr) of each."""
        port, processes, logs = str(free_port()), [], []
        for rank, output_dir in enumerate(nodes):
            command = [
                sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                "--main_process_port", port, "--rdzv_backend", "static", "--same_network", "--mixed_precision", "no",
                "--dynamo_backend", "no", str(EXAMPLES / "run_pretrain.py"), *common_args(tiny_config, output_dir),
                "--train_dir", str(photo_folder), "--max_train_steps", "4", "--checkpointing_steps", "2",
                "--validation_steps", "0", "--num_validation_composites", "2", "--dataloader_num_workers", "0",
                "--report_to", "none", *extra,
            ]  # fmt: skip
            logs.append(tmp_path / f"node{rank}-port{port}.log")
            with open(logs[-1], "w") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=example_env, stdout=log, stderr=log))
        try:
            return [(process.wait(timeout=240), log.read_text()) for process, log in zip(processes, logs)]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()

    first = launch([])
    assert all(code == 0 for code, _ in first), [log[-3000:] for _, log in first]
    assert "local to each node: every node keeps its own copy" in first[1][1]
    for rank, folder in enumerate(nodes):
        for step in (2, 4):
            names = {p.name for p in (folder / f"checkpoint-{step}").iterdir()}
            assert {"model.safetensors", "optimizer.bin", "training_state.json", f"random_states_{rank}.pkl"} <= names
    assert (nodes[0] / "model.safetensors").is_file() and not (nodes[1] / "model.safetensors").exists()
    reference = load_file(nodes[0] / "model.safetensors")

    shutil.rmtree(nodes[1] / "checkpoint-4")  # node 1's copy now ends at step 2, node 0's at step 4
    for code, log in launch(["--resume_from_checkpoint", "latest"]):
        assert code != 0 and "]: Traceback" not in log, log[-3000:]  # the script's own lines carry no traceback
        assert (
            "run_pretrain.py: error: --resume_from_checkpoint latest finds different checkpoints on different nodes "
            "(checkpoint-2 of run 0, checkpoint-4 of run 0)"
        ) in log, log[-3000:]

    shutil.rmtree(nodes[0] / "checkpoint-4")
    resumed = launch(["--resume_from_checkpoint", "latest"])
    assert all(code == 0 for code, _ in resumed), [log[-3000:] for _, log in resumed]
    final = load_file(nodes[0] / "model.safetensors")
    assert all(torch.equal(final[name], reference[name]) for name in reference)


def test_accumulation_steps_from_the_launcher_must_match_the_argument(
    tmp_path, tiny_config, photo_folder, run_in_process, monkeypatch
):
    """accelerate launch exports ACCELERATE_GRADIENT_ACCUMULATION_STEPS (DeepSpeed configs), which Accelerate
    takes over the script's argument: a disagreement is a one-line error; agreement is trained and recorded."""
    output_dir = tmp_path / "run"
    args = common_args(tiny_config, output_dir) + [
        "--train_dir", str(photo_folder), "--max_train_steps", "2", "--checkpointing_steps", "2",
        "--validation_steps", "0", "--num_validation_composites", "2", "--report_to", "none",
    ]  # fmt: skip
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    with pytest.raises(SystemExit) as stopped:
        run_in_process("run_pretrain.py", args)
    message = str(stopped.value)
    assert "error: --gradient_accumulation_steps is 1 but the launcher set 2" in message and "\n" not in message
    assert not output_dir.exists()

    run_in_process("run_pretrain.py", args + ["--gradient_accumulation_steps", "2"])
    state = json.loads((output_dir / "checkpoint-2" / "training_state.json").read_text())
    assert state["run"]["gradient_accumulation_steps"] == 2 and state["micro_step"] == 2 * state["global_step"] == 4


class Prepared(torch.nn.Module):
    """What DDP, FSDP or a DeepSpeed engine are to the scripts: a module around the model, counting its calls."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, **inputs):
        self.calls += 1
        return self.model(**inputs)


def test_validation_runs_the_prepared_model(tiny_config):
    """Under FSDP / ZeRO-3 only the prepared model's forward gathers the sharded parameters: validation calls it
    (on every process), never the unwrapped model, and leaves it in training mode."""
    from types import SimpleNamespace

    from lemart_hf import SwinIHForHarmonization
    from lemart_hf.lemart import LEMaRTComposer
    from lemart_hf.training import resolve_model_config

    script = load_script("run_pretrain.py")
    prepared = Prepared(SwinIHForHarmonization(resolve_model_config(tiny_config)))
    accelerator = SimpleNamespace(
        device=torch.device("cpu"),
        autocast=lambda: torch.autocast("cpu", enabled=False),
        unwrap_model=lambda model: pytest.fail("validation must not run the unwrapped model"),
    )
    validation = LEMaRTComposer()(torch.rand(3, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    metrics, predictions = script.validate(prepared, validation, accelerator, batch_size=2)
    assert prepared.calls == 2 and predictions.shape == (3, 3, 32, 32) and prepared.training
    assert set(metrics) == {"mse", "psnr", "fmse", "fpsnr"}


def test_killed_and_resumed_run_ends_with_the_same_weights(
    tmp_path, tiny_config, photo_folder, example_env, run_in_process
):
    """Kill -9 right after the first checkpoint (mid-epoch), resume with `latest`: bit-identical final weights.

    8 training photos, batch 2, accumulation 2, --dataset_repeats 1: an epoch is 2 optimizer steps, so checkpoint-3
    is mid-epoch (and the run crosses 5 epoch boundaries after it). The data are read by a worker process;
    stochastic depth is on; crops, order and composites are random. The killed run is a real process; the resumed
    and the reference runs run in this process (same single thread).
    """

    def args(output_dir):
        return common_args(tiny_config, output_dir) + [
            "--train_dir", str(photo_folder), "--max_train_steps", "12", "--gradient_accumulation_steps", "2",
            "--checkpointing_steps", "3", "--validation_steps", "0", "--num_validation_composites", "2",
            "--dataloader_num_workers", "1", "--report_to", "none", "--dataset_repeats", "1",
        ]  # fmt: skip

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    command = [sys.executable, str(EXAMPLES / "run_pretrain.py"), *args(interrupted)]
    process = subprocess.Popen(command, cwd=ROOT, env=example_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_checkpoint(process, interrupted / "checkpoint-3")
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"
    killed_at = max(int(p.name.split("-")[1]) for p in interrupted.glob("checkpoint-*") if p.name[11:].isdigit())

    summary = run_in_process("run_pretrain.py", args(interrupted) + ["--resume_from_checkpoint", "latest"])
    run_in_process("run_pretrain.py", args(uninterrupted))

    resumed = load_file(interrupted / "model.safetensors")
    reference = load_file(uninterrupted / "model.safetensors")
    assert resumed.keys() == reference.keys()
    different = [name for name in reference if not torch.equal(resumed[name], reference[name])]
    assert not different, f"resumed from step {killed_at}: {len(different)} tensors differ, e.g. {different[:3]}"
    assert not list(interrupted.glob("checkpoint-*.tmp"))
    assert summary["global_step"] == 12 and summary["images_seen"] == 12 * 2 * 2


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_the_model(
    tmp_path, tiny_config, photo_folder, example_env, run_in_process
):
    """What a scheduler's pre-emption does: SIGTERM to the script and its data worker; the run saves and exits 0."""
    output_dir = tmp_path / "preempted"

    def args(max_train_steps: int) -> list[str]:
        return common_args(tiny_config, output_dir) + [
            "--train_dir", str(photo_folder), "--max_train_steps", str(max_train_steps), "--checkpointing_steps", "2",
            "--validation_steps", "0", "--num_validation_composites", "2", "--dataloader_num_workers", "1",
            "--report_to", "none",
        ]  # fmt: skip

    command = [sys.executable, str(EXAMPLES / "run_pretrain.py"), *args(10000)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=example_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_checkpoint(process, output_dir / "checkpoint-2")
        os.killpg(process.pid, signal.SIGTERM)  # the whole process group, as schedulers and Ctrl-C do
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()[-3000:]
    summary = json.loads((output_dir / "train_results.json").read_text())
    assert summary["stopped_early"] == "SIGTERM received"
    stopped_at = summary["global_step"]
    assert 2 <= stopped_at < 10000 and (output_dir / f"checkpoint-{stopped_at}" / "training_state.json").is_file()
    assert (output_dir / "model.safetensors").is_file()
    saved = json.loads((output_dir / f"checkpoint-{stopped_at}" / "training_state.json").read_text())
    assert saved["train_seconds"] > 0
    resumed = run_in_process("run_pretrain.py", args(stopped_at + 1) + ["--resume_from_checkpoint", "latest"])
    assert resumed["global_step"] == stopped_at + 1
    assert resumed["train_hours"] * 3600 > saved["train_seconds"]  # the resumed run adds its time to the first one's


def test_nan_loss_stops_with_a_clear_message_after_saving(tmp_path, tiny_config, photo_folder, run_in_process):
    output_dir = tmp_path / "nan"
    args = common_args(tiny_config, output_dir) + [
        "--train_dir", str(photo_folder), "--max_train_steps", "6", "--learning_rate", "1e30", "--max_grad_norm", "0",
        "--lr_warmup_steps", "0", "--dataloader_num_workers", "0", "--report_to", "none", "--validation_steps", "0",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as error:
        run_in_process("run_pretrain.py", args)
    message = str(error.value.code)
    assert "the loss is nan" in message or "the loss is inf" in message
    assert "at step" in message and "--resume_from_checkpoint" in message
    saved = sorted(output_dir.glob("checkpoint-*"))
    assert len(saved) == 1 and (saved[0] / "training_state.json").is_file() and saved[0].name in message
    assert not (output_dir / "model.safetensors").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_dir", "/no/such/folder"], "--train_dir '/no/such/folder' is not a directory"),
        (["--model_config", "swinih-huge"], "is neither a preset ("),
        (["--streaming"], "--streaming needs --dataset_name"),
        (["--dataset_name", "x", "--streaming", "--max_train_steps", "2", "--shuffle_buffer_size", "0"],
         "--shuffle_buffer_size must be >= 1"),
        (["--train_dir", ".", "--dataset_name", "x"], "not both"),
        (["--mask_ratio", "1.5"], "--mask_ratio must be in (0, 1]"),
        (["--mask_strategy", "zigzag"], "invalid choice: 'zigzag'"),
        (["--resume_from_checkpoint", "/no/checkpoint-3"], "is not a complete checkpoint folder"),
        (["--max_train_steps", "0"], "--max_train_steps must be >= 1"),
        (["--hub_strategy", "checkpoint"], "--hub_strategy checkpoint uploads with --push_to_hub, which is not given"),
    ],
)
def test_bad_arguments_give_clear_errors(argv, message, capsys):
    run_pretrain = load_script("run_pretrain.py")
    with pytest.raises(SystemExit) as error:
        run_pretrain.parse_args(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_a_model_path_that_holds_no_model_is_named(tmp_path, capsys):
    checkpoint = tmp_path / "run" / "checkpoint-8"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_state.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    run_pretrain = load_script("run_pretrain.py")
    for folder, message in ((checkpoint, "is a training checkpoint"), (tmp_path / "empty", "holds no config.json")):
        with pytest.raises(SystemExit) as error:
            run_pretrain.parse_args(["--model_name_or_path", str(folder)])
        assert error.value.code == 2 and message in capsys.readouterr().err


def test_empty_image_folder_is_reported(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    run_pretrain = load_script("run_pretrain.py")
    args = run_pretrain.parse_args(["--train_dir", str(tmp_path / "empty"), "--model_config", tiny_config])
    with pytest.raises(ValueError, match="no readable images"):
        run_pretrain.build_datasets(args)


def test_several_train_dirs_are_one_photo_set(tmp_path, photo_folder, tiny_config):
    """--train_dir A B A: the union of the folders (a folder named twice counts once)."""
    import shutil

    second = tmp_path / "more"
    shutil.copytree(photo_folder, second)
    count = len(list(photo_folder.iterdir()))
    run_pretrain = load_script("run_pretrain.py")
    argv = ["--train_dir", str(photo_folder), str(second), str(photo_folder), "--model_config", tiny_config,
            "--num_validation_images", "2"]  # fmt: skip
    train, validation, source = run_pretrain.build_datasets(run_pretrain.parse_args(argv))
    assert len(train) + len(validation) == 2 * count and str(second) in source


@pytest.mark.parametrize("streaming", [False, True])
def test_dataset_name_sources_hold_out_validation_photos(photo_folder, tiny_config, streaming):
    """--dataset_name (here a local image folder, which `datasets` loads offline), downloaded or streamed."""
    run_pretrain = load_script("run_pretrain.py")
    argv = ["--dataset_name", str(photo_folder), "--model_config", tiny_config, "--resolution", "16",
            "--num_validation_images", "2", "--max_train_steps", "3", "--dataloader_num_workers", "1"]  # fmt: skip
    argv += ["--streaming"] if streaming else []
    train, validation, source = run_pretrain.build_datasets(run_pretrain.parse_args(argv))
    assert len(validation) == 2 and validation[0]["pixel_values"].shape == (3, 16, 16)
    assert str(photo_folder) in source
    if streaming:  # one shard (an image folder): one epoch of the stream is the 10 photos less the 2 held out
        samples = list(islice(train, 9))
        assert [s["position"]["epoch"] for s in samples] == [0] * 8 + [1]
        assert samples[0]["pixel_values"].shape == (3, 16, 16)
    else:
        assert len(train) == 8 and train[5]["pixel_values"].dtype == torch.uint8


@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory, photo_folder) -> Path:
    """The 10 test photos in 5 Parquet shards of 2 (examples/pack_shards.py)."""
    out = tmp_path_factory.mktemp("shards")
    load_script("pack_shards.py").main([str(photo_folder), str(out), "--images_per_shard", "2"])
    return out


def test_killed_and_resumed_streamed_run_sees_the_same_photos(
    tmp_path, tiny_config, photo_shards, example_env, run_in_process
):
    """--streaming over 5 shards, 2 DataLoader workers: kill -9 after checkpoint-3, resume with `latest`.

    2 photos held out for validation, 8 trained on; batch 2, windows of 3 photos; the checkpoint falls after 3
    batches (worker 1's batch comes next) and inside a window, and the workers start a second epoch of their shards
    after it. The final weights equal those of the uninterrupted run bit for bit: the same photos, crops and order.
    """

    def args(output_dir):
        return common_args(tiny_config, output_dir) + [
            "--dataset_name", str(photo_shards), "--streaming", "--max_train_steps", "7", "--checkpointing_steps",
            "3", "--validation_steps", "0", "--num_validation_images", "2", "--num_validation_composites", "2",
            "--dataloader_num_workers", "2", "--shuffle_buffer_size", "3", "--report_to", "none",
        ]  # fmt: skip

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    command = [sys.executable, str(EXAMPLES / "run_pretrain.py"), *args(interrupted)]
    process = subprocess.Popen(command, cwd=ROOT, env=example_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_checkpoint(process, interrupted / "checkpoint-3")
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"
    position = json.loads((interrupted / "checkpoint-3" / "data_position_0.json").read_text())
    assert position["next_worker"] == 1 and position["num_workers"] == 2

    summary = run_in_process("run_pretrain.py", args(interrupted) + ["--resume_from_checkpoint", "latest"])
    run_in_process("run_pretrain.py", args(uninterrupted))
    resumed = load_file(interrupted / "model.safetensors")
    reference = load_file(uninterrupted / "model.safetensors")
    different = [name for name in reference if not torch.equal(resumed[name], reference[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert summary["global_step"] == 7 and summary["images_seen"] == 7 * 2


def test_streamed_run_uses_a_worker_per_shard_at_most_and_refuses_other_resume_settings(
    tmp_path, tiny_config, photo_folder, run_in_process
):
    two_shards = tmp_path / "shards"
    load_script("pack_shards.py").main([str(photo_folder), str(two_shards), "--images_per_shard", "5"])
    base = common_args(tiny_config, tmp_path / "run") + [
        "--dataset_name", str(two_shards), "--streaming", "--max_train_steps", "2", "--report_to", "none",
        "--validation_steps", "0", "--num_validation_images", "2", "--num_validation_composites", "1",
    ]  # fmt: skip
    # 3 workers asked for, 2 shards: 2 workers; worker 0's one shard holds the 5 photos held out for validation.
    warning = r"2 per process: reading with 2 DataLoader worker\(s\) per process, not 3"
    with pytest.warns(UserWarning, match=warning), pytest.raises(SystemExit) as error:
        run_in_process("run_pretrain.py", base + ["--dataloader_num_workers", "3", "--num_validation_images", "5"])
    assert str(error.value.code) == (
        "run_pretrain.py: error: no photo to train on in the shards of DataLoader worker 0 of process 0 (each "
        "unreadable or held out for validation)"
    )

    run_in_process("run_pretrain.py", base + ["--dataloader_num_workers", "1", "--checkpointing_steps", "1"])
    for argv, message in (
        (["--dataloader_num_workers", "0"], "the stream position was saved with num_workers 1 (now 0)"),
        (["--dataloader_num_workers", "1", "--shuffle_buffer_size", "7"], "shuffle_buffer_size 1000 (now 7)"),
    ):
        with pytest.raises(SystemExit) as error:
            run_in_process("run_pretrain.py", base + argv + ["--resume_from_checkpoint", "latest"])
        assert str(error.value.code).startswith("run_pretrain.py: error: ") and message in str(error.value.code)
