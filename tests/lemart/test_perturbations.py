import pytest
import torch

from lemart_hf.lemart import DEFAULT_PERTURBATIONS, PERTURBATIONS, Perturbation, RandomPerturbations, perturbations
from lemart_hf.lemart.perturbations import apply_affine, apply_defocus_blur, apply_gamma, brightness_transform

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _seeded(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _fixed(perturbation: Perturbation, strength: float) -> Perturbation:
    """The same perturbation at one fixed strength."""
    return Perturbation(
        perturbation.name,
        strength,
        strength,
        signed=False,
        color_transform=perturbation.color_transform,
        apply=perturbation.apply,
        keeps_mean=perturbation.keeps_mean,
    )


def test_registry_has_the_documented_perturbations():
    assert set(PERTURBATIONS) == {
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "white_balance",
        "gamma",
        "defocus_blur",
        "sharpness",
    }
    assert DEFAULT_PERTURBATIONS == tuple(PERTURBATIONS)
    for perturbation in PERTURBATIONS.values():
        assert (perturbation.color_transform is None) != (perturbation.apply is None)
        assert 0 < perturbation.min_strength <= perturbation.max_strength


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_strengths_stay_in_their_documented_range_and_away_from_identity(name):
    perturbation = PERTURBATIONS[name]
    strength = perturbation.sample_strength(4096, _seeded(0))
    magnitude = strength.abs()
    assert magnitude.min() >= perturbation.min_strength and magnitude.max() <= perturbation.max_strength
    if perturbation.signed:
        assert 0.4 < (strength > 0).float().mean() < 0.6


@pytest.mark.parametrize("name", list(PERTURBATIONS))
@pytest.mark.parametrize("end", ["weakest", "strongest"])
def test_every_perturbation_changes_every_image_and_stays_in_range(name, end, make_images):
    perturbation = PERTURBATIONS[name]
    images = make_images(8)
    magnitude = perturbation.min_strength if end == "weakest" else perturbation.max_strength
    strength = magnitude * (torch.tensor([1.0, -1.0] * 4) if perturbation.signed else torch.ones(8))
    if perturbation.color_transform is not None:
        output = apply_affine(images, perturbation.color_transform(strength, images.mean(dim=(2, 3))))
    else:
        output = perturbation.apply(images.clone(), strength)
    assert output.shape == images.shape and output.dtype == images.dtype
    assert output.min() >= 0 and output.max() <= 1
    change = (output - images).abs().mean(dim=(1, 2, 3))
    assert change.min() > 0.004, change


def test_gamma_matches_a_power_curve_at_the_anchor_points():
    values = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    for gamma in (0.5, 2.0):
        curved = apply_gamma(values.clone(), torch.tensor([gamma]).log())
        torch.testing.assert_close(curved.flatten(), torch.tensor([0.0, 0.5**gamma, 1.0]))


def test_hue_rotation_keeps_greys_and_white_balance_keeps_grey_luma():
    grey = torch.full((2, 3, 4, 4), 0.4)
    strength = torch.tensor([0.5, -0.5])
    hue = apply_affine(grey, PERTURBATIONS["hue"].color_transform(strength, grey.mean(dim=(2, 3))))
    torch.testing.assert_close(hue, grey)
    balanced = apply_affine(grey, PERTURBATIONS["white_balance"].color_transform(strength, grey.mean(dim=(2, 3))))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((balanced * luma).sum(dim=1), (grey * luma).sum(dim=1))
    assert (balanced[0, 0] > balanced[0, 2]).all()  # positive strength: warmer


def test_filters_keep_a_flat_image_flat_and_blur_smooths_texture(make_images):
    flat = torch.full((2, 3, 32, 32), 0.3)
    for name in ("defocus_blur", "sharpness"):
        strength = PERTURBATIONS[name].sample_strength(2, _seeded(0))
        torch.testing.assert_close(PERTURBATIONS[name].apply(flat.clone(), strength), flat)
    noisy = make_images(2)
    blurred = apply_defocus_blur(noisy.clone(), torch.tensor([0.05, 0.05]))  # no bound: a 3.2 px radius
    assert blurred.diff(dim=-1).abs().mean() < 0.5 * noisy.diff(dim=-1).abs().mean()


def test_each_sample_gets_a_random_subset_in_random_order(make_images):
    brighter = _fixed(PERTURBATIONS["brightness"], 0.4)
    darker_tones = _fixed(PERTURBATIONS["gamma"], 0.6)
    images = make_images(48)
    output = RandomPerturbations([brighter, darker_tones], 1, 2)(images, _seeded(0))

    def bright(x):
        return apply_affine(x, brightness_transform(torch.full((len(x),), 0.4), x.mean(dim=(2, 3))))

    def gamma(x):
        return apply_gamma(x.clone(), torch.full((len(x),), 0.6))

    candidates = torch.stack([bright(images), gamma(images), gamma(bright(images)), bright(gamma(images))])
    distance = (candidates - output).abs().amax(dim=(2, 3, 4))  # (4 sequences, 48 samples)
    assert (distance.amin(dim=0) < 1e-5).all()
    assert set(distance.argmin(dim=0).tolist()) == {0, 1, 2, 3}


def test_same_seed_same_output_other_seed_other_output(make_images):
    images = make_images(8)
    perturb = RandomPerturbations()
    first, again, other = perturb(images, _seeded(3)), perturb(images, _seeded(3)), perturb(images, _seeded(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_result_does_not_depend_on_the_cpu_chunking(monkeypatch, make_images):
    images = make_images(10)
    whole = RandomPerturbations()(images, _seeded(5))
    monkeypatch.setattr(perturbations, "CPU_CHUNK_PIXELS", 3 * 64 * 64)  # chunks of 3 images
    chunked = RandomPerturbations()(images, _seeded(5))
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_dense_and_by_subsets_give_the_same_perturbations(make_images):
    images = make_images(24)
    by_subsets = RandomPerturbations()(images, _seeded(6), dense=False)
    dense = RandomPerturbations()(images, _seeded(6), dense=True)
    torch.testing.assert_close(dense, by_subsets, atol=1e-6, rtol=0)


def test_blur_kernel_is_sized_for_the_bound_and_strengths_clamped_to_it(make_images):
    images = make_images(2)
    bounded = apply_defocus_blur(images.clone(), torch.tensor([0.01, 0.2]), max_strength=0.02)
    torch.testing.assert_close(bounded, apply_defocus_blur(images.clone(), torch.tensor([0.01, 0.02])))


def test_output_buffer_is_filled_in_place_and_input_untouched(make_images):
    images = make_images(4)
    original = images.clone()
    buffer = torch.zeros(4, 4, 64, 64)
    returned = RandomPerturbations()(images, _seeded(0), out=buffer[:, :3])
    assert returned.data_ptr() == buffer.data_ptr()
    assert torch.equal(images, original)
    assert torch.equal(buffer[:, 3], torch.zeros(4, 64, 64))
    assert torch.equal(buffer[:, :3], RandomPerturbations()(images, _seeded(0)))


@pytest.mark.parametrize("device", DEVICES)
def test_perturbations_run_on_every_device(device, make_images):
    images = make_images(4).to(device)
    output = RandomPerturbations()(images, _seeded(0, device))
    assert output.device == images.device and output.dtype == images.dtype and output.shape == images.shape


def test_perturbations_may_be_any_iterable_of_names():
    names = ("hue", "gamma")
    assert [p.name for p in RandomPerturbations((n for n in names), 1, 2).perturbations] == list(names)


def test_invalid_counts_raise():
    with pytest.raises(ValueError, match="min_count"):
        RandomPerturbations(["hue", "gamma"], 1, 3)


def test_sharpness_is_unsharp_masking_against_pil_smooth_kernel(make_images):
    images = make_images(3, 20, 24)
    strength = torch.tensor([0.8, 1.5, 3.0])
    smooth = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    identity = torch.zeros(3, 3)
    identity[1, 1] = 1
    expected = torch.cat(
        [
            torch.nn.functional.conv2d(
                torch.nn.functional.pad(images[i : i + 1], (1, 1, 1, 1), mode="replicate"),
                (identity + s * (identity - smooth)).expand(3, 1, 3, 3),
                groups=3,
            ).clamp(0, 1)
            for i, s in enumerate(strength)
        ]
    )
    torch.testing.assert_close(PERTURBATIONS["sharpness"].apply(images.clone(), strength), expected)
