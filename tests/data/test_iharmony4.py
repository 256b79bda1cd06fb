"""The iHarmony4 loader on a tiny tree made in a temp dir: both list styles, fraction, errors, the collator."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf.data import HarmonizationCollator, find_subsets, load_iharmony4, split_composite_name
from lemart_hf.data.iharmony4 import random_resized_crop_flip

# subset -> {split: [(real, mask id, composite k), ...]}
TREE = {
    "HFlickr": {"train": [("f1", 1, 1), ("f1", 1, 2), ("f2", 3, 1)], "test": [("f3", 1, 1)]},
    "HCOCO": {
        "train": [("c100_0", 5, 1), ("c101", 1, 1), ("c102", 2, 1), ("c103", 1, 1), ("c104", 1, 1), ("c105", 1, 1)],
        "test": [("c200", 1, 1), ("c200", 1, 2)],
    },
}


def make_tree(root: Path, combined_lists: bool = False, size=(24, 20)) -> Path:
    """Writes the TREE as an iHarmony4 layout: per-subset lists, or one IHD_<split>.txt at the root."""
    rng = np.random.default_rng(0)
    h, w = size
    for subset, splits in TREE.items():
        for folder in ("composite_images", "masks", "real_images"):
            (root / subset / folder).mkdir(parents=True, exist_ok=True)
        for split, items in splits.items():
            names = []
            for real, mask_id, k in items:
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    root / subset / "real_images" / f"{real}.jpg"
                )
                mask = np.zeros((h, w), np.uint8)
                mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
                Image.fromarray(mask).save(root / subset / "masks" / f"{real}_{mask_id}.png")
                name = f"{real}_{mask_id}_{k}.jpg"
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    root / subset / "composite_images" / name
                )
                names.append(name)
            if combined_lists:
                with open(root / f"IHD_{split}.txt", "a") as f:
                    f.writelines(f"{subset}/composite_images/{n}\n" for n in names)
            else:
                (root / subset / f"{subset}_{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "iharmony4")


def test_finds_subsets_in_table_order(tree):
    (tree / "not_a_subset").mkdir()
    assert find_subsets(tree) == ["HCOCO", "HFlickr"]


def test_columns_paths_and_lazy_images(tree):
    ds = load_iharmony4(tree, split="train")
    assert ds.column_names == ["composite", "mask", "real", "subset", "name"]
    assert len(ds) == 9 and ds["subset"] == ["HCOCO"] * 6 + ["HFlickr"] * 3
    assert ds[0]["name"] == "c100_0_5_1.jpg"
    raw = ds.with_format("arrow")[0:1]["composite"].to_pylist()[0]
    assert raw["path"].endswith(os.path.join("HCOCO", "composite_images", "c100_0_5_1.jpg"))
    row = ds[0]
    assert isinstance(row["composite"], Image.Image) and row["composite"].size == (20, 24)
    assert Path(ds.with_format("arrow")[0:1]["mask"].to_pylist()[0]["path"]).name == "c100_0_5.png"
    assert Path(ds.with_format("arrow")[0:1]["real"].to_pylist()[0]["path"]).name == "c100_0.jpg"


def test_subset_selection_and_split(tree):
    ds = load_iharmony4(tree, subsets="HFlickr", split="test")
    assert ds["name"] == ["f3_1_1.jpg"] and ds["subset"] == ["HFlickr"]
    ds = load_iharmony4(tree, subsets=["HFlickr", "HCOCO"], split="test")
    assert ds["subset"] == ["HFlickr", "HCOCO", "HCOCO"]  # the order asked for
    with pytest.raises(ValueError, match="not found"):
        load_iharmony4(tree, subsets=["HAdobe5k"])


def test_combined_list_style(tmp_path):
    root = make_tree(tmp_path / "ihd", combined_lists=True)
    assert not (root / "HCOCO" / "HCOCO_train.txt").exists()
    ds = load_iharmony4(root, split="train")
    per_subset = load_iharmony4(make_tree(tmp_path / "per_subset"), split="train")
    assert ds["name"] == per_subset["name"] and ds["subset"] == per_subset["subset"]
    assert load_iharmony4(root, subsets=["HFlickr"], split="test")["name"] == ["f3_1_1.jpg"]


def test_explicit_list_file(tree):
    (tree / "mine.txt").write_text("HFlickr/composite_images/f1_1_2.jpg\nHCOCO/composite_images/c101_1_1.jpg\n")
    ds = load_iharmony4(tree, list_file="mine.txt")
    assert sorted(ds["name"]) == ["c101_1_1.jpg", "f1_1_2.jpg"]
    (tree / "plain.txt").write_text("f2_3_1.jpg\n")
    assert load_iharmony4(tree, subsets="HFlickr", list_file=tree / "plain.txt")["name"] == ["f2_3_1.jpg"]
    with pytest.raises(ValueError, match="names no subset"):
        load_iharmony4(tree, list_file=tree / "plain.txt")


def test_fraction_is_seeded_per_subset_and_keeps_order(tree):
    half = load_iharmony4(tree, split="train", fraction=0.5, seed=3)
    assert half["subset"].count("HCOCO") == 3 and half["subset"].count("HFlickr") == 2  # round(1.5) = 2
    again = load_iharmony4(tree, split="train", fraction=0.5, seed=3)
    assert half["name"] == again["name"]
    full_order = load_iharmony4(tree, split="train")["name"]
    positions = [full_order.index(n) for n in half["name"]]
    assert positions == sorted(positions)
    others = {tuple(load_iharmony4(tree, split="train", fraction=0.5, seed=s)["name"]) for s in range(8)}
    assert len(others) > 1
    assert len(load_iharmony4(tree, split="train", fraction=0.01)) == 2  # at least one per subset
    assert len(load_iharmony4(tree, split="train", max_samples=2)) == 4
    with pytest.raises(ValueError):
        load_iharmony4(tree, fraction=0.0)
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        load_iharmony4(tree, max_samples=0)


def test_a_subsets_fraction_does_not_depend_on_the_other_subsets_loaded(tree):
    both = load_iharmony4(tree, ["HCOCO", "HFlickr"], split="train", fraction=0.5, seed=3)
    for subset in ("HCOCO", "HFlickr"):
        alone = load_iharmony4(tree, subset, split="train", fraction=0.5, seed=3)["name"]
        assert alone == [n for n, s in zip(both["name"], both["subset"]) if s == subset]


def test_missing_files_one_error_with_count_and_first_paths(tree):
    names = [f"x{i}_1_1.jpg" for i in range(7)]
    (tree / "HCOCO" / "HCOCO_test.txt").write_text("".join(n + "\n" for n in names))
    with pytest.raises(FileNotFoundError) as info:
        load_iharmony4(tree, split="test")
    message = str(info.value)
    assert message.startswith("21 file(s)")  # 7 composites, 7 masks, 7 reals
    assert "x0_1_1.jpg" in message and "(and 16 more)" in message and "\n" not in message


def test_missing_root_list_and_subsets(tmp_path, tree):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_iharmony4(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no iHarmony4 subsets"):
        load_iharmony4(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no 'val' list"):
        load_iharmony4(tree, split="val")


def test_split_composite_name():
    assert split_composite_name("c100_0_5_1.jpg") == ("c100_0", "c100_0_5")
    assert split_composite_name("d90000001-11_1_2.jpg") == ("d90000001-11", "d90000001-11_1")
    with pytest.raises(ValueError):
        split_composite_name("nounderscore.jpg")


def test_collator_at_protocol_size(tree):
    ds = load_iharmony4(tree, split="train")
    batch = HarmonizationCollator()([ds[0], ds[7]])
    assert batch["composite"].shape == (2, 3, 256, 256) and batch["real"].shape == (2, 3, 256, 256)
    assert batch["mask"].shape == (2, 1, 256, 256) and set(batch["mask"].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch["pixel_values"], torch.cat([batch["composite"], batch["mask"]], 1))
    assert batch["original_size"].tolist() == [[24, 20], [24, 20]]
    assert batch["subset"] == ["HCOCO", "HFlickr"] and batch["name"][1] == "f1_1_2.jpg"
    assert 0.0 <= batch["composite"].min() and batch["composite"].max() <= 1.0
    soft = HarmonizationCollator("is2am", size=32)([ds[0]])
    assert soft["mask"].shape == (1, 1, 32, 32) and len(soft["mask"].unique()) > 2


def test_collator_train_mode_and_crop_flip(tree):
    ds = load_iharmony4(tree, split="train")
    torch.manual_seed(0)
    batch = HarmonizationCollator(size=16, train=True)([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 4, 16, 16)
    ramp = torch.arange(12.0).view(1, 3, 4).expand(3, 3, 4).contiguous()
    out = random_resized_crop_flip({"a": ramp, "b": ramp.clone()}, (3, 4), scale=(1.0, 1.0), hflip_p=1.0)
    assert torch.equal(out["a"], ramp.flip(-1)) and torch.equal(out["a"], out["b"])


def test_held_out_photos_keep_every_composite_of_a_photo_together(tmp_path):
    import datasets

    from lemart_hf.data import hold_out_photos

    names = [f"p{i:03d}_1_{k}.jpg" for i in range(200) for k in (1, 2)]
    rows = datasets.Dataset.from_dict({"subset": ["S"] * len(names), "name": names})
    kept, held = hold_out_photos(rows, 0.1)
    assert len(kept) + len(held) == len(rows)
    photos = lambda d: {n.split("_")[0] for n in d["name"]}  # noqa: E731
    assert not photos(kept) & photos(held)
    assert 10 <= len(photos(held)) <= 30  # about 10% of 200 photos
    assert hold_out_photos(rows.select(range(100)), 0.1)[1]["name"] == [n for n in held["name"] if n < "p050"]
    unheld = [i for i, n in enumerate(names) if n.split("_")[0] not in photos(held)][:4]  # two photos
    assert hold_out_photos(rows.select(unheld), 0.1)[1]["name"] == [names[unheld[0]], names[unheld[1]]]  # still one
    with pytest.raises(ValueError, match="leaves no training pairs"):
        hold_out_photos(rows.select(range(2)), 0.1)  # one photo
