"""examples/reproduce_ablations.sh (issue 20): the summary of its folder layout, and the whole chain on tiny data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import EXAMPLES, ROOT, TINY_CONFIG, make_iharmony4_tree, make_photo_folder, run_script, script_env


def write_results(folder: Path, fpsnr: dict[str, float]) -> None:
    """A run_eval.py results.json whose rows have the given fPSNR (other metrics derived from it)."""
    folder.mkdir(parents=True)
    table = {
        subset: {"mse": 100 - value, "psnr": value + 8, "fmse": 400 - value, "fpsnr": value, "images": 4}
        for subset, value in fpsnr.items()
    }
    (folder / "results.json").write_text(json.dumps({"table": table}))


def test_summary_averages_seeds_and_plots_the_curve(tmp_path):
    pytest.importorskip("matplotlib")
    write_results(tmp_path / "eval_composite", {"HA": 15.0, "HB": 16.0, "All": 15.5})
    for seed, offset in ((0, 0.0), (1, 1.0)):
        base = tmp_path / f"seed{seed}"
        write_results(base / "random_0.5/eval_finetune_lemart_0.1", {"HA": 18 + offset, "HB": 17, "All": 17.5 + offset})
        write_results(base / "random_0.5/eval_finetune_scratch_0.1", {"HA": 16, "HB": 16, "All": 16})
        write_results(base / "grid_0.5/eval_finetune_lemart_0.1", {"HA": 17, "HB": 16.5, "All": 16.8})
    write_results(tmp_path / "seed0/random_0.5/eval_finetune_lemart_1.0", {"HA": 20, "HB": 19, "All": 19.5})
    write_results(tmp_path / "seed0/random_0.5/eval_finetune_scratch_1.0", {"HA": 19, "HB": 18, "All": 18.5})
    write_results(tmp_path / "seed0/block_0.5/eval_finetune_lemart_0.1", {"HA": 18.2, "HB": 17.1, "All": 17.6})

    out = run_script("summarize_ablations.py", [str(tmp_path)]).stdout
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ")}
    # the two seeds' HA fPSNR (18, 19) average to 18.50; every seed's All fPSNR is listed
    assert "| 18.50 |" in rows["LEMaRT, random masks"]
    assert "17.50 (seed 0) / 18.50 (seed 1)" in rows["LEMaRT, random masks"]
    assert "17.60 (seed 0) |" in rows["LEMaRT, block masks"] and "LEMaRT, ratio 0.3" not in rows
    assert rows["Composite (input unchanged)"].endswith("|  |")
    assert "10%: +2.00" in out and "100%: +1.00" in out  # LEMaRT - scratch on All, seed-averaged where paired
    assert out.index("### Mask strategy") < out.index("### Mask ratio") < out.index("### Label fraction")
    with Image.open(tmp_path / "label_fraction_curve.png") as plot:
        assert plot.width > 2 * plot.height  # two panels side by side, one per test subset


def test_summary_of_an_empty_folder_is_an_error(tmp_path):
    result = run_script("summarize_ablations.py", [str(tmp_path)], check=False)
    assert result.returncode == 2 and "no results under" in result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_reproduce_ablations_end_to_end_on_tiny_data(tmp_path):
    """One seed, two variants, the curve at 10% only, two training steps per run: every stage runs and the tables
    come out (10 processes; the plot is tested on made-up results above)."""
    pytest.importorskip("matplotlib")
    data = tmp_path / "data"
    make_photo_folder(data / "photos", count=6)
    make_photo_folder(data / "photos_diverse", count=6, seed=1)
    make_iharmony4_tree(data, "HOutdoor")
    make_iharmony4_tree(data, "HDiverse", seed=1)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    small = "--max_train_steps 2 --train_batch_size 2 --resolution 32 --dataloader_num_workers 0"
    env = {
        **script_env(), "SEEDS": "0", "FRACTIONS": "0.1", "VARIANTS": "random_0.5 grid_0.5", "PYTHON": sys.executable,
        "ACCELERATE": str(Path(sys.executable).with_name("accelerate")), "MODEL_CONFIG": str(config),
        "PRETRAIN_ARGS": f"{small} --num_validation_images 2 --num_validation_composites 2 --validation_steps 2",
        "FINETUNE_ARGS": small, "EVAL_ARGS": "--batch_size 4 --num_workers 0",
    }  # fmt: skip
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(EXAMPLES / "reproduce_ablations.sh"), str(data), str(out), "cpu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    done = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("**/eval_*/results.json"))
    assert done == [
        "eval_color_transfer", "eval_composite",
        "seed0/grid_0.5/eval_finetune_lemart_0.1",  # scratch rows do not depend on the masks: only with random_0.5
        "seed0/random_0.5/eval_finetune_lemart_0.1", "seed0/random_0.5/eval_finetune_scratch_0.1",
    ]  # fmt: skip
    summary = (out / "results.md").read_text()
    assert "LEMaRT, grid masks" in summary and "10% labels, from scratch" in summary and "10%: " in summary
    assert "| HDiverse MSE |" in summary
    # the pre-training saw both photo folders, with the variant's masks
    card = (out / "seed0/grid_0.5/pretrained/README.md").read_text()
    assert "photos_diverse" in card and "grid, ratio 0.5" in card
