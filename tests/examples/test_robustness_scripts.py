"""The example scripts under bad input and faults (issue 18): every failure exits within seconds, whatever the number
of data workers, with one line naming the file or the cause; degenerate settings are refused up front."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A failing run must end well within this (start-up and a few tiny steps take about 10 s on a busy 2-core machine).
EXIT_TIMEOUT = 90


def run_to_failure(script: str, args: list[str], env: dict, preexec_fn=None) -> tuple[int, list[str]]:
    """Run ``script`` in a subprocess; (exit code, stderr lines). A hang fails the test at `EXIT_TIMEOUT`."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
        preexec_fn=preexec_fn,
    )
    return result.returncode, result.stderr.strip().splitlines()


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def broken_iharmony4(tmp_path, iharmony4_root) -> Path:
    """The tiny iHarmony4 tree (8 training, 4 test pairs) with every training composite and the last test composite
    truncated."""
    root = shutil.copytree(iharmony4_root, tmp_path / "data")
    for index in (*range(8), 11):
        truncate(root / "HTiny" / "composite_images" / f"r{index:03d}_1_1.jpg")
    return root


def test_eval_with_workers_names_a_truncated_composite_and_exits(broken_iharmony4, tmp_path, example_env):
    code, err = run_to_failure(
        "run_eval.py",
        ["--data_dir", str(broken_iharmony4), "--baseline", "composite", "--num_workers", "2", "--batch_size", "1",
         "--output_dir", str(tmp_path / "eval")],
        example_env,
    )  # fmt: skip
    assert code == 1 and not any("Traceback" in line for line in err), err[-20:]
    assert err[-1].startswith("run_eval.py: error: cannot read image '") and "r011_1_1.jpg" in err[-1], err[-5:]


def test_finetune_with_workers_names_a_truncated_training_composite_and_exits(
    broken_iharmony4, tmp_path, tiny_config, example_env
):
    code, err = run_to_failure(
        "run_finetune.py",
        ["--data_dir", str(broken_iharmony4), "--model_config", tiny_config, "--resolution", "32",
         "--train_batch_size", "2", "--max_train_steps", "4", "--dataloader_num_workers", "1", "--report_to", "none",
         "--validation_steps", "0", "--skip_final_evaluation", "--output_dir", str(tmp_path / "finetune")],
        example_env,
    )  # fmt: skip
    assert code == 1 and not any("Traceback" in line for line in err), err[-20:]
    assert err[-1].startswith("run_finetune.py: error: cannot read image '") and "_1_1.jpg': " in err[-1], err[-5:]


def test_pretrain_on_a_full_disk_exits_without_a_partial_checkpoint(tmp_path, tiny_config, photo_folder, example_env):
    """A file-size limit makes the checkpoint's writes fail as a full disk does (EFBIG instead of ENOSPC)."""

    def small_files_only():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))  # the tiny model's weights are larger

    output_dir = tmp_path / "pretrain"
    code, err = run_to_failure(
        "run_pretrain.py",
        ["--train_dir", str(photo_folder), "--model_config", tiny_config, "--resolution", "32",
         "--train_batch_size", "2", "--max_train_steps", "4", "--checkpointing_steps", "2",
         "--dataloader_num_workers", "1", "--report_to", "none", "--validation_steps", "0",
         "--num_validation_images", "0", "--output_dir", str(output_dir)],
        example_env,
        preexec_fn=small_files_only,
    )  # fmt: skip
    assert code == 1 and not any("Traceback" in line for line in err), err[-20:]
    assert err[-1].startswith(f"run_pretrain.py: error: could not write checkpoint-2 into '{output_dir}'"), err[-5:]
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "model.safetensors").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mask_ratio", "0"], "--mask_ratio must be in (0, 1]"),
        (["--mask_ratio", "0.005"], "selects no patch of the 8x8 grid"),
        (["--resolution", "1"], "--mask_grid_size must be in [1, --resolution 1]"),
        (["--resolution", "7", "--mask_grid_size", "4"], "--resolution must be >= 8"),
        (["--model_config", "swinih-tiny", "--output_dir", "README.md"], "--output_dir 'README.md' is a file"),
        (["--output_dir", "README.md/run"], "cannot be created: "),
    ],
)
def test_pretrain_refuses_degenerate_runs(extra, message, load_example, capsys):
    with pytest.raises(SystemExit) as error:
        load_example("run_pretrain.py").parse_args(extra)
    assert error.value.code == 2 and message in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory, tiny_config) -> dict[str, Path]:
    """A tiny saved model, and copies with a truncated, a corrupt and no model.safetensors."""
    from lemart_hf import SwinIHForHarmonization, SwinIHImageProcessor
    from lemart_hf.training import resolve_model_config

    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    SwinIHForHarmonization(resolve_model_config(tiny_config)).save_pretrained(good)
    SwinIHImageProcessor(size=32).save_pretrained(good)
    folders = {"good": good}
    for case in ("truncated", "corrupt", "missing"):
        folders[case] = shutil.copytree(good, root / case)
        weights = folders[case] / "model.safetensors"
        if case == "truncated":
            truncate(weights)
        elif case == "corrupt":
            weights.write_bytes(b"\x00" * 4096)
        else:
            weights.unlink()
    return folders


@pytest.mark.parametrize(
    "case, message", [("truncated", "corrupt or truncated model.safetensors"), ("corrupt", "corrupt or truncated"),
                      ("missing", "holds no model.safetensors")],
)  # fmt: skip
def test_eval_and_finetune_name_a_broken_weights_file(
    case, message, model_folders, iharmony4_root, load_example, capsys
):
    folder = str(model_folders[case])
    calls = [
        ("run_eval.py", ["--data_dir", str(iharmony4_root), "--model", folder]),
        ("run_finetune.py", ["--data_dir", str(iharmony4_root), "--model_name_or_path", folder]),
    ]
    for script, argv in calls:
        module = load_example(script)
        with pytest.raises(SystemExit) as error:
            (module.main if script == "run_eval.py" else module.parse_args)(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert error.value.code == 2 and message in err[-1] and "Traceback" not in "".join(err), err


def test_eval_checks_its_output_folders_first_and_prints_before_saving(
    iharmony4_root, tmp_path, load_example, capsys, monkeypatch
):
    from lemart_hf.evaluation import HarmonizationResults

    run_eval = load_example("run_eval.py")
    (tmp_path / "file").write_text("")
    for name in ("--output_dir", "--save_images"):
        with pytest.raises(SystemExit) as error:
            run_eval.main(["--data_dir", str(iharmony4_root), "--baseline", "composite", name, str(tmp_path / "file")])
        assert error.value.code == 2 and f"{name} '{tmp_path / 'file'}' is a file" in capsys.readouterr().err

    def full_disk(self, output_dir, stem="results"):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(HarmonizationResults, "save", full_disk)
    with pytest.raises(SystemExit) as error:
        run_eval.main(["--data_dir", str(iharmony4_root), "--baseline", "composite", "--num_workers", "0",
                       "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    assert "No space left on device" in str(error.value.code)
    assert "| **All** | 4 |" in capsys.readouterr().out  # the table came out before the failing save


def test_eval_refuses_a_mask_of_another_size(tmp_path, iharmony4_root, load_example):
    from PIL import Image

    root = shutil.copytree(iharmony4_root, tmp_path / "data")
    Image.new("L", (40, 48), 255).save(root / "HTiny" / "masks" / "r009_1.png")
    with pytest.raises(SystemExit) as error:
        load_example("run_eval.py").main(
            ["--data_dir", str(root), "--baseline", "composite", "--num_workers", "0",
             "--output_dir", str(tmp_path / "eval")]
        )  # fmt: skip
    message = str(error.value.code)
    assert message.startswith("run_eval.py: error: r009_1_1.jpg: the mask '")
    assert "is 40x48 but the composite" in message


@pytest.mark.parametrize("size", ["7", "0"])
def test_eval_refuses_a_working_size_below_8(size, iharmony4_root, load_example, capsys):
    with pytest.raises(SystemExit) as error:
        load_example("run_eval.py").main(["--data_dir", str(iharmony4_root), "--baseline", "composite",
                                          "--working_size", size])  # fmt: skip
    assert error.value.code == 2 and "--working_size must be >= 8" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["run_pretrain.py", "run_finetune.py", "run_eval.py"])
@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_scripts_wait_passively_for_openmp_unless_told_otherwise(script, given):
    """Set before torch loads OpenMP (spinning waits made the composer 10x slower beside other work); an explicit
    setting is kept."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    probe = (
        "import os, runpy, sys; runpy.run_path(sys.argv[1], run_name='imported');"
        "import torch; print(os.environ['OMP_WAIT_POLICY'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "examples" / script)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [given or "PASSIVE"]
