"""examples/run_finetune.py end to end on a tiny iHarmony4-layout tree: accelerate launch, a pre-trained start,
the label fraction, the final evaluation in the model card (numbers equal to run_eval.py's), exact resumption,
the Hub upload (to a stand-in of the Hub) and argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LAUNCH_1 = ["--num_processes", "1", "--cpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common_args(root: Path, output_dir: Path) -> list[str]:
    return [
        "--data_dir", str(root), "--resolution", "32", "--train_batch_size", "2", "--eval_batch_size", "4",
        "--logging_steps", "1", "--output_dir", str(output_dir), "--report_to", "none", "--lr_warmup_steps", "1",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tiny_config) -> Path:
    """A 'pre-trained' tiny model folder, as run_pretrain.py writes it (random weights suffice here)."""
    from lemart_hf import SwinIHForHarmonization, SwinIHImageProcessor
    from lemart_hf.training import resolve_model_config

    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    SwinIHForHarmonization(resolve_model_config(tiny_config)).save_pretrained(folder)
    SwinIHImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_finetune_end_to_end_with_accelerate_launch(tmp_path, iharmony4_root, pretrained, run_example):
    output_dir = tmp_path / "finetune"
    args = common_args(iharmony4_root, output_dir) + [
        "--model_name_or_path", str(pretrained), "--train_fraction", "50%", "--max_train_steps", "3",
        "--checkpointing_steps", "2", "--validation_steps", "2", "--validation_max_samples", "2",
        "--dataloader_num_workers", "1",
    ]  # fmt: skip
    run_example("run_finetune.py", args, launcher=LAUNCH_1)

    state = json.loads((output_dir / "checkpoint-2" / "training_state.json").read_text())
    assert state["run"]["train_pairs"] == 4  # 50% of the 8 training pairs
    from transformers import AutoModelForImageToImage

    import lemart_hf  # noqa: F401

    model = AutoModelForImageToImage.from_pretrained(output_dir)
    assert model.config.loss_type == "fn_mse"

    # The final evaluation: all 4 test pairs, in eval_results.json and in the model card's model-index.
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["table"]["All"]["images"] == 4
    card = (output_dir / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    entry = meta["model-index"][0]["results"][0]
    assert entry["dataset"]["split"] == "test" and entry["dataset"]["name"].startswith("HTiny")
    metrics = {m["type"]: m["value"] for m in entry["metrics"]}
    assert metrics["psnr"] == pytest.approx(results["table"]["All"]["psnr"], abs=1e-3)
    assert "| **All** | 4 |" in card and "fine-tuned from the pre-trained model" in card
    assert "base_model" not in meta  # a local folder is no Hub model id
    assert (output_dir / "samples" / "step-0000002.png").is_file() and (output_dir / "sample_grid.png").is_file()

    # The same numbers as examples/run_eval.py on the saved model.
    run_eval = load_script("run_eval.py")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        run_eval.main(
            [
                "--data_dir",
                str(iharmony4_root),
                "--model",
                str(output_dir),
                "--output_dir",
                str(tmp_path / "eval"),
                "--num_workers",
                "0",
            ]
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated["table"]["All"]["psnr"] == pytest.approx(results["table"]["All"]["psnr"], abs=1e-4)


def test_resumed_finetuning_equals_uninterrupted(tmp_path, iharmony4_root, tiny_config, run_in_process):
    """From scratch; 8 pairs, batch 2: checkpoint-3 is mid-epoch. Resuming from it gives identical weights."""

    def args(output_dir, steps):
        return common_args(iharmony4_root, output_dir) + [
            "--model_config", tiny_config, "--max_train_steps", steps, "--checkpointing_steps", "3",
            "--validation_steps", "0", "--dataloader_num_workers", "0", "--skip_final_evaluation",
        ]  # fmt: skip

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_in_process("run_finetune.py", args(reference, "6"))
    # The resumed run starts from the reference run's checkpoint-3 (as if it had been killed right after it).
    resumed.mkdir()
    import shutil

    shutil.copytree(reference / "checkpoint-3", resumed / "checkpoint-3")
    run_in_process("run_finetune.py", args(resumed, "6") + ["--resume_from_checkpoint", str(resumed / "checkpoint-3")])
    a, b = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_on_two_cpu_processes_trains_and_evaluates_like_one_process(
    tmp_path, iharmony4_root, tiny_config, run_example, run_in_process, free_port
):
    """FSDP (examples/accelerate_configs/fsdp.yaml) on 2 gloo processes, through the launch shim of
    tests/examples/fsdp_on_cpu.py: the validation and the final test evaluation run the sharded model on both
    processes, each on its share of the pairs. A single process with 2 accumulation steps trains on the same
    batches; without stochastic depth both export the same model (float tolerance) and score the same."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**json.loads(Path(tiny_config).read_text()), "drop_path_rate": 0.0}))

    def args(output_dir: Path) -> list[str]:
        return common_args(iharmony4_root, output_dir) + [
            "--model_config", str(config), "--max_train_steps", "3", "--checkpointing_steps", "2",
            "--validation_steps", "2", "--validation_max_samples", "2", "--dataloader_num_workers", "0",
        ]  # fmt: skip

    fsdp, one = tmp_path / "fsdp", tmp_path / "one"
    launch = [
        "--config_file", str(ROOT / "examples" / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "2",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(Path(__file__).with_name("fsdp_on_cpu.py")),
    ]  # fmt: skip
    result = run_example("run_finetune.py", args(fsdp), launcher=launch)
    assert "DistributedType.FSDP" in result.stdout + result.stderr
    run_in_process("run_finetune.py", args(one) + ["--gradient_accumulation_steps", "2"])

    a, b = load_file(fsdp / "model.safetensors"), load_file(one / "model.safetensors")
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    fsdp_results, one_results = (json.loads((d / "eval_results.json").read_text()) for d in (fsdp, one))
    assert fsdp_results["table"]["All"]["images"] == 4
    assert fsdp_results["table"]["All"]["psnr"] == pytest.approx(one_results["table"]["All"]["psnr"], abs=1e-4)
    fsdp_summary, one_summary = (json.loads((d / "train_results.json").read_text()) for d in (fsdp, one))
    assert fsdp_summary["validation"]["psnr"] == pytest.approx(one_summary["validation"]["psnr"], abs=1e-4)


def test_self_supervised_mix_and_held_out_validation_resume_exactly(
    tmp_path, iharmony4_root, tiny_config, run_in_process
):
    """LEMaRT and identity samples in the batches, validation on held-out training photos; a run resumed from a
    mid-run checkpoint mixes the same samples, so its weights equal the uninterrupted run's."""

    def args(output_dir):
        return common_args(iharmony4_root, output_dir) + [
            "--model_config", tiny_config, "--max_train_steps", "4", "--checkpointing_steps", "2",
            "--validation_steps", "2", "--validation_fraction", "0.2", "--lemart_fraction", "0.5",
            "--identity_fraction", "0.5", "--dataloader_num_workers", "0", "--skip_final_evaluation",
        ]  # fmt: skip

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    summary = run_in_process("run_finetune.py", args(reference))
    assert 0 < summary["train_pairs"] < 8  # 8 training photos, some held out
    assert summary["validation"]["step"] == 4 and summary["validation"]["fpsnr"] > 0
    card = (reference / "README.md").read_text()
    assert "50% LEMaRT composites in the object masks, 50% identity" in card
    assert "20% of the training photos held out" in card
    import shutil

    resumed.mkdir()
    shutil.copytree(reference / "checkpoint-2", resumed / "checkpoint-2")
    run_in_process("run_finetune.py", args(resumed) + ["--resume_from_checkpoint", "latest"])
    a, b = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_push_to_hub_records_the_base_model_and_uploads_the_folder(
    tmp_path, iharmony4_root, pretrained, run_in_process, stand_in_hub_in_process
):
    """Against the stand-in hub (tests/examples/conftest.py; run_pretrain.py is run against it in a subprocess, by
    HF_ENDPOINT, in test_push_to_hub.py); the start is a local folder whose card names the repository it was
    released as: the fine-tuned card records that as base_model."""
    from lemart_hf import SwinIHForHarmonization, SwinIHImageProcessor
    from lemart_hf.hub import hub_code_files, model_card, save_hub_folder

    released = tmp_path / "pretrained"
    card = model_card(model_name="team/tiny-pretrained", summary="Pre-trained.", metrics=[], recipe={}, command="",
                      license="other", license_reason="Test.")  # fmt: skip
    model = SwinIHForHarmonization.from_pretrained(pretrained)
    save_hub_folder(released, model, SwinIHImageProcessor.from_pretrained(pretrained), card)
    output_dir = tmp_path / "tiny-harmonizer"
    extra = [
        "--model_name_or_path", str(released), "--max_train_steps", "2", "--checkpointing_steps", "1",
        "--validation_steps", "0", "--dataloader_num_workers", "0", "--max_eval_samples", "2", "--push_to_hub",
        "--hub_token", "hf_write", "--license", "cc-by-nc-4.0",
    ]  # fmt: skip
    run_in_process("run_finetune.py", common_args(iharmony4_root, output_dir) + extra)

    hub = stand_in_hub_in_process
    assert hub.repos == {"tester/tiny-harmonizer"}
    (commit,) = hub.commits
    files = set(commit["files"])
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json"} <= files
    assert set(hub_code_files(SwinIHForHarmonization)) <= files  # model and pipeline code: loads without lemart_hf
    assert not [f for f in files if f.startswith(("checkpoint-", "logs/", "samples/"))]
    assert (output_dir / "checkpoint-2").is_dir()  # kept locally, not uploaded
    meta = yaml.safe_load(commit["files"]["README.md"].decode().split("---\n")[1])
    assert meta["base_model"] == "team/tiny-pretrained" and meta["license"] == "cc-by-nc-4.0"
    assert meta["model-index"][0]["name"] == "tester/tiny-harmonizer"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--train_fraction", "0"], "argument --train_fraction: must be in (0, 1]"),
        (["--train_fraction", "150%"], "argument --train_fraction: must be in (0, 1]"),
        (["--train_fraction", "ten"], "expected a fraction like 0.1"),
        (["--subsets", "HCOCO"], "--subsets ['HCOCO'] not found"),
        (["--model_config", "swinih-huge"], "is neither a preset ("),
        (["--model_name_or_path", "./no/such/model"], "is not a directory"),
        (["--lemart_fraction", "0.8", "--identity_fraction", "0.5"], "--lemart_fraction / --identity_fraction: the LEMaRT and identity fractions must be >= 0 with a sum <= 1"),
        (["--validation_fraction", "1"], "--validation_fraction must be in [0, 1)"),
    ],
)
def test_bad_arguments_give_clear_errors(extra, message, iharmony4_root, tmp_path, capsys):
    run_finetune = load_script("run_finetune.py")
    with pytest.raises(SystemExit) as error:
        run_finetune.parse_args(common_args(iharmony4_root, tmp_path) + extra)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    run_finetune = load_script("run_finetune.py")
    with pytest.raises(SystemExit):
        run_finetune.parse_args(["--data_dir", str(tmp_path / "nowhere")])
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_finetune.parse_args(["--data_dir", str(tmp_path)])
    assert "holds no iHarmony4-layout subset" in capsys.readouterr().err


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "HOutdoor").is_dir(), reason="../shared/data is not present")
def test_finetune_on_shared_houtdoor_smoke(tmp_path, shared_data, tiny_config, run_in_process):
    """Two steps on 1% of the real HOutdoor labels, scored on 4 test pairs per subset."""
    extra = [
        "--subsets", "HOutdoor", "--model_config", tiny_config, "--train_fraction", "1%", "--max_train_steps", "2",
        "--validation_steps", "0", "--max_eval_samples", "4", "--dataloader_num_workers", "0",
    ]  # fmt: skip
    summary = run_in_process("run_finetune.py", common_args(shared_data, tmp_path / "houtdoor") + extra)
    assert summary["train_pairs"] == 9  # round(1% of 878)
    assert summary["test"]["All"]["images"] == 4
