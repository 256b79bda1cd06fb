"""examples/compare_model_sizes.sh (issue 15) on tiny data: two model sizes, each pre-trained and fine-tuned for the
same time, scored on the held-out validation photos, with the table and the curves of fPSNR per training hour."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import EXAMPLES, ROOT, TINY_CONFIG, make_iharmony4_tree, make_photo_folder, script_env


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_compare_model_sizes_end_to_end_on_tiny_data(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    data = tmp_path / "data"
    make_photo_folder(data / "photos", count=6)
    make_photo_folder(data / "photos_diverse", count=6, seed=1)
    make_iharmony4_tree(data, "HOutdoor", train=10)
    make_iharmony4_tree(data, "HDiverse", train=10, seed=1)
    narrow, wide = tmp_path / "narrow.json", tmp_path / "wide.json"
    narrow.write_text(json.dumps(TINY_CONFIG))
    wide.write_text(json.dumps({**TINY_CONFIG, "embed_dim": 32}))
    small = "--train_batch_size 2 --resolution 32 --dataloader_num_workers 0 --logging_steps 1"
    env = {
        **script_env(), "PYTHON": sys.executable, "ACCELERATE": str(Path(sys.executable).with_name("accelerate")),
        # 2 and 3 seconds a step for 0.1 minutes: 3 and 2 steps of each stage, the faster model taking more; validation
        # every 2 fine-tuning steps, so the narrow model's last one comes after the loop; a budget the runs never reach
        "PRESETS": f"{narrow}:2 {wide}:3", "PRETRAIN_MINUTES": "0.1", "FINETUNE_MINUTES": "0.1", "VALIDATION_STEPS": "2",
        "PRETRAIN_ARGS": f"{small} --num_validation_images 2 --num_validation_composites 2 --time_budget_minutes 30",
        "FINETUNE_ARGS": f"{small} --time_budget_minutes 30", "EVAL_ARGS": "--batch_size 4 --num_workers 0",
    }  # fmt: skip
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(EXAMPLES / "compare_model_sizes.sh"), str(data), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    for name, steps in (("narrow", 3), ("wide", 2)):
        chain = out / name
        for stage in ("pretrained", "finetune_lemart_1.0"):
            summary = json.loads((chain / stage / "train_results.json").read_text())
            assert summary["global_step"] == summary["max_train_steps"] == steps and summary["train_hours"] > 0
            assert summary["validation"]["step"] == steps  # validated at the end, whatever --validation_steps
        scored = json.loads((chain / "eval_finetune_lemart_1.0" / "results.json").read_text())
        assert scored["split"] == "train" and scored["held_out_fraction"] == 0.1  # never the test split
    table = (out / "results.md").read_text()
    assert table.count(", LEMaRT pre-trained, 100% labels |") == 2
    assert "train, the 10% of its photos held out for validation" in table
    # one line per run with its hours; the fine-tuning starts where its pre-training ended
    assert result.stdout.count("pre-training: ") == 2 and result.stdout.count("finetune_lemart_1.0: ") == 2
    assert "3 of 3 steps" in result.stdout and "h before), validation fPSNR" in result.stdout
    assert "STOPPED EARLY" not in result.stdout
    with Image.open(out / "compute_curves.png") as plot:
        assert plot.width > 2 * plot.height  # pre-training | fine-tuning


def test_a_presets_entry_without_its_seconds_per_step_is_refused(tmp_path):
    result = subprocess.run(
        ["bash", str(EXAMPLES / "compare_model_sizes.sh"), str(tmp_path), str(tmp_path / "out")],
        cwd=ROOT, env={**script_env(), "PRESETS": "swinih-tiny"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "PRESETS entry 'swinih-tiny' is not preset:seconds" in result.stderr
    result = subprocess.run(
        ["bash", str(EXAMPLES / "compare_model_sizes.sh"), str(tmp_path), str(tmp_path / "out")],
        cwd=ROOT, env={**script_env(), "PRESETS": "swinih-tiny:0"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "(seconds > 0)" in result.stderr
