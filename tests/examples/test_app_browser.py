"""examples/app.py in a real browser: the app serves on 127.0.0.1; Debian's chromium, headless and driven by
playwright, uploads a real composite and its mask (or paints the mask with the brush, or picks an example); the
image the page returns is the pipeline's output for the same inputs, pixel for pixel (PNG both ways: the composite
is uploaded as a PNG copy of the shipped JPEG, so browser and PIL decode the same pixels), and bad input gets a
message on the page.

Skipped where gradio, playwright or /usr/bin/chromium is missing (`.ci/run` installs chromium where apt can).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # gradio's own pandas deprecation warnings
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "r001807"  # a car pasted into a street scene: 341x256
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def model() -> str:
    """The packaged model."""
    from lemart_hf.default_model import default_model_path

    return default_model_path()


@pytest.fixture(scope="module")
def app_url(model, load_example, tmp_path_factory, free_port):
    """`examples/app.py`'s page for ``model``, served on 127.0.0.1 (a free port) by this process until the module's
    tests are done: no second start-up of torch and transformers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        app = load_example("app.py").build_app(model)
        _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        yield url
        app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium, headless, with a fresh profile (playwright downloads no browser of its own)."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        yield context
        context.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page()
    page.goto(app_url)
    page.wait_for_selector("#harmonize", timeout=20_000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """A real composite shipped with the package, as a PNG (a lossless upload: the browser and PIL decode the same
    pixels), and its mask."""
    from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR

    composite = tmp_path_factory.mktemp("sample") / f"{SAMPLE}.png"
    with Image.open(SAMPLE_COMPOSITES_DIR / f"{SAMPLE}.jpg") as image:
        image.convert("RGB").save(composite)
    return composite, SAMPLE_COMPOSITES_DIR / f"{SAMPLE}_mask.png"


def _upload_composite(page, path: Path) -> None:
    page.locator("#composite input[type=file]").set_input_files(str(path))
    page.get_by_text("Upload an image").wait_for(state="hidden", timeout=10_000)


def _upload_mask(page, path: Path) -> None:
    page.locator("#mask input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#mask img", timeout=10_000)


def _harmonize(page) -> tuple[np.ndarray, np.ndarray]:
    """Press Harmonize and download the two images the page shows: (composite, harmonized)."""
    page.click("#harmonize")
    page.wait_for_selector("#result img", timeout=30_000)
    return tuple(
        np.asarray(Image.open(io.BytesIO(page.request.get(page.locator(f"{box} img").get_attribute("src")).body())))
        for box in ("#shown", "#result")
    )


@pytest.fixture(scope="module")
def reference(model):
    """The pipeline the page's output is compared with: transformers' pipeline on the same model, in this process."""
    from transformers import pipeline

    from lemart_hf import ImageHarmonizationPipeline

    pipe = pipeline("image-harmonization", model=model, pipeline_class=ImageHarmonizationPipeline, device="cpu")
    return lambda composite, mask: np.asarray(pipe(composite, mask))


def test_bad_input_gets_a_message_not_a_traceback(page, sample, tmp_path):
    composite_path, mask_path = sample
    width, height = Image.open(composite_path).size
    Image.new("L", (width // 2, height // 2), 255).save(small := tmp_path / "small_mask.png")
    Image.new("L", (width, height), 0).save(empty := tmp_path / "empty_mask.png")

    def message(text: str) -> None:
        page.click("#harmonize")
        page.get_by_text(text).wait_for(timeout=10_000)

    message("Upload a composite first.")
    _upload_composite(page, composite_path)
    message("No mask: upload the composite's mask, or paint the pasted region with the brush.")
    _upload_mask(page, small)
    message(f"The mask is {width // 2}x{height // 2} but the composite is {width}x{height}")
    _upload_mask(page, empty)
    message("The mask is empty (all black)")
    _upload_mask(page, mask_path)
    page.locator("#model textarea").fill(str(tmp_path / "no-such-model"))
    message("Cannot load the model")
    assert not page.locator("#result img").count()
    assert "Traceback" not in page.content()


def test_uploaded_composite_and_mask_give_the_pipelines_output(page, reference, sample, tmp_path):
    composite_path, mask_path = sample
    _upload_composite(page, composite_path)
    _upload_mask(page, mask_path)
    shown, harmonized = _harmonize(page)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'app.png'}")

    composite, mask = Image.open(composite_path).convert("RGB"), Image.open(mask_path).convert("L")
    np.testing.assert_array_equal(shown, np.asarray(composite))
    np.testing.assert_array_equal(harmonized, reference(composite, mask))
    inside = np.asarray(mask) > 0
    changed = (harmonized != shown).any(axis=-1)
    assert changed[inside].mean() > 0.5 and not changed[~inside].any()


def test_an_example_fills_composite_and_mask(page, reference):
    from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR

    page.locator("table tbody tr").first.click()  # the first shipped composite, SAMPLE
    page.wait_for_selector("#mask img", timeout=10_000)
    shown, harmonized = _harmonize(page)

    mask = Image.open(SAMPLE_COMPOSITES_DIR / f"{SAMPLE}_mask.png")
    np.testing.assert_array_equal(harmonized, reference(Image.fromarray(shown), mask))
    inside = np.asarray(mask) > 0
    changed = (harmonized != shown).any(axis=-1)
    assert changed[inside].mean() > 0.5 and not changed[~inside].any()


def test_brush_strokes_are_the_mask(page, sample):
    composite_path, _ = sample
    _upload_composite(page, composite_path)
    page.get_by_role("button", name="Brush").first.click()
    box = page.locator("#composite canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 40, y)
    page.mouse.down()
    page.mouse.move(x + 40, y, steps=8)
    page.mouse.up()
    shown, harmonized = _harmonize(page)

    rows, columns = np.nonzero((harmonized != shown).any(axis=-1))
    assert rows.size > 0  # the painted stroke was harmonized ...
    height, width = shown.shape[:2]  # ... and nothing far from it: a horizontal stroke across the middle
    assert rows.min() > height * 0.25 and rows.max() < height * 0.75
    assert columns.min() > width * 0.1 and columns.max() < width * 0.9
