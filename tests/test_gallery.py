"""lemart_hf.gallery: the before/after pages and HTML of a composite folder, and the colour shifts."""

import json

import numpy as np
import pytest
from PIL import Image

from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR, colour_shift, composite_folder, make_gallery, reinhard_method


def test_packaged_sample_composites_are_complete():
    rows = composite_folder(SAMPLE_COMPOSITES_DIR)
    assert len(rows) == 6 and (SAMPLE_COMPOSITES_DIR / "README.md").is_file()
    for row in rows:
        assert row.composite.mode == "RGB" and row.mask.size == row.composite.size and max(row.composite.size) <= 384
        pasted = (np.asarray(row.mask) > 127).mean()
        assert 0 < pasted < 1


def test_colour_shift_measures_the_foreground_only():
    composite = Image.new("RGB", (8, 8), (120, 120, 120))
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    assert colour_shift(composite, composite, mask) == {"dL": 0.0, "dab": 0.0}
    redder = composite.copy()
    redder.paste((160, 110, 110), (0, 0, 4, 8))
    shift = colour_shift(composite, redder, mask)
    assert shift["dab"] > 10 and abs(shift["dL"]) < 10
    background_only = composite.copy()
    background_only.paste((0, 0, 255), (4, 0, 8, 8))
    assert colour_shift(composite, background_only, mask)["dab"] == 0.0


def test_gallery_pages_html_and_shifts(tmp_path):
    rows = composite_folder(SAMPLE_COMPOSITES_DIR, max_side=96, limit=3)
    methods = {"unchanged": lambda composite, mask: composite, "colour transfer": reinhard_method}
    gallery = make_gallery(rows, methods, tmp_path, thumb=64, rows_per_page=2)
    assert [p.name for p in gallery["pages"]] == ["page_01.png", "page_02.png"]
    with Image.open(gallery["pages"][0]) as page:
        assert page.width >= 4 * 64 and page.height >= 2 * 64  # mask overlay, composite and two methods; 2 rows
    html = gallery["html"].read_text()
    assert html.count("<img ") == 3 * 4 and "colour transfer" in html
    shifts = json.loads((tmp_path / "shifts.json").read_text())
    assert shifts["unchanged"]["mean_dab"] == 0.0 and shifts["colour transfer"]["mean_dab"] > 0
    assert sorted(shifts["unchanged"]["images"]) == sorted(row.name for row in rows)


def test_missing_mask_is_named(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    with pytest.raises(FileNotFoundError, match="no mask for .*a.jpg: expected .*a_mask.png"):
        composite_folder(tmp_path)
