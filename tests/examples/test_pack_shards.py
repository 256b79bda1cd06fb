"""examples/pack_shards.py: a photo folder -> Parquet shards that run_pretrain.py --streaming reads."""

from __future__ import annotations

import pytest


def test_packs_a_folder_and_says_how_to_train_on_it(tmp_path, photo_folder, load_example, capsys):
    paths = load_example("pack_shards.py").main([str(photo_folder), str(tmp_path / "out"), "--images_per_shard", "4"])
    assert [p.name for p in paths] == ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet",
                                       "train-00002-of-00003.parquet"]  # fmt: skip
    output = capsys.readouterr().out
    assert "wrote 3 shard(s)" in output and f"--dataset_name {tmp_path / 'out'} --streaming" in output

    import datasets

    stream = datasets.load_dataset(str(tmp_path / "out"), split="train", streaming=True)
    assert stream.num_shards == 3 and len(list(stream)) == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/no/such/folder", "OUT"], "'/no/such/folder' is not a directory"),
        (["PHOTOS", "OUT", "--images_per_shard", "0"], "--images_per_shard must be >= 1"),
    ],
)
def test_bad_arguments_give_clear_errors(argv, message, photo_folder, tmp_path, load_example, capsys):
    argv = [str(photo_folder) if a == "PHOTOS" else str(tmp_path / a) if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as error:
        load_example("pack_shards.py").main(argv)
    assert error.value.code == 2 and message in capsys.readouterr().err


def test_an_existing_pack_is_not_overwritten(tmp_path, photo_folder, load_example):
    pack = load_example("pack_shards.py").main
    pack([str(photo_folder), str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="pack_shards.py: error: .* already holds Parquet shards"):
        pack([str(photo_folder), str(tmp_path / "out")])
