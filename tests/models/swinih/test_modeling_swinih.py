import pytest
import torch

from lemart_hf import SwinIHConfig, SwinIHForHarmonization, SwinIHModel
from lemart_hf.models.modeling_harmonization import foreground_normalized_mse_loss
from lemart_hf.models.swinih.modeling_swinih import window_merge, window_partition

# Small versions of each architecture so the suite stays fast on 2 CPU cores.
SMALL = dict(embed_dim=16, depths=[1, 2, 2], num_heads=[2, 2, 4], window_size=4, drop_path_rate=0.0)
VARIANTS = {
    "swinih": {},
    "local": {"num_global_layers": 0},
    "multiscale": {"stage_resolution_factors": [1, 2, 1]},
    "hierarchical": {"depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4], "stage_resolution_factors": [1, 2, 4, 8]},
}


def small_model(variant="swinih", attn_implementation=None, **overrides):
    config = SwinIHConfig(**{**SMALL, **VARIANTS[variant], **overrides})
    if attn_implementation:
        config._attn_implementation = attn_implementation
    return SwinIHForHarmonization(config).eval()


def make_inputs(batch=2, height=37, width=45, soft=False):
    composite = torch.rand(batch, 3, height, width)
    mask = torch.zeros(batch, 1, height, width)
    mask[:, :, height // 4 : height * 3 // 4, width // 5 : width * 4 // 5] = 1.0
    if soft:
        mask = mask * 0.5 + 0.25 * (mask > 0)
    return torch.cat([composite, mask], dim=1)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("size", [(37, 45), (300, 200), (8, 8)])
def test_output_shape_matches_any_input_size(variant, size):
    model = small_model(variant)
    pixel_values = make_inputs(height=size[0], width=size[1])
    with torch.no_grad():
        harmonized = model(pixel_values).harmonized
    assert harmonized.shape == (2, 3, *size)
    assert harmonized.min() >= 0 and harmonized.max() <= 1


def test_sdpa_and_eager_give_the_same_numbers():
    sdpa = small_model(attn_implementation="sdpa")
    eager = small_model(attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    pixel_values = make_inputs(height=40, width=56)  # padded grid 12x16: shifted windows on both axes
    with torch.no_grad():
        torch.testing.assert_close(sdpa(pixel_values).harmonized, eager(pixel_values).harmonized, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_reaches_every_parameter(variant):
    model = small_model(variant).train()
    pixel_values = make_inputs(height=32, width=32)
    loss = model(pixel_values, labels=torch.rand(2, 3, 32, 32)).loss
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_blend_keeps_background_bit_exact_and_can_be_switched_off():
    pixel_values = make_inputs()
    composite, mask = pixel_values[:, :3], pixel_values[:, 3:]
    background = (mask == 0).expand_as(composite)
    with torch.no_grad():
        blended = small_model()(pixel_values).harmonized
        free = small_model(blend_background=False)(pixel_values).harmonized
    assert torch.equal(blended[background], composite[background])
    assert not torch.equal(free[background], composite[background])


def test_soft_mask_blends_linearly():
    pixel_values = make_inputs(soft=True)
    composite, mask = pixel_values[:, :3], pixel_values[:, 3:]
    model = small_model()
    with torch.no_grad():
        blended = model(pixel_values).harmonized
        model.config.blend_background = False
        free = model(pixel_values).harmonized
    expected = (mask * free + (1 - mask) * composite).clamp(0, 1)
    inside_range = (free > 0) & (free < 1)  # where the unblended output was not clamped
    torch.testing.assert_close(blended[inside_range], expected[inside_range])


def test_losses_match_hand_computation():
    prediction = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[0, :, 0, 0] = 1.0  # one foreground pixel with error 1 in each channel
    target[1, :, 0, :] = 0.5  # four foreground pixels with error 0.5
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, 0, 0] = 1
    mask[1, :, 0, :] = 1
    # per sample: sum(M d^2) / (C * max(sum M, min_area))
    sample0 = 3 * 1.0 / (3 * max(1, 2))
    sample1 = 3 * 4 * 0.25 / (3 * max(4, 2))
    loss = foreground_normalized_mse_loss(prediction, target, mask, min_area=2)
    assert loss.item() == pytest.approx((sample0 + sample1) / 2)


def test_model_loss_uses_config_or_argument():
    model = small_model(blend_background=False, residual_output=False)
    pixel_values = make_inputs(height=16, width=16)
    labels = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        raw = model(pixel_values).harmonized  # clamped, but the check below uses the loss path
        mse = model(pixel_values, labels=labels).loss
        fn = model(pixel_values, labels=labels, loss_type="fn_mse").loss
    assert mse.item() > 0 and fn.item() > 0 and mse.item() != pytest.approx(fn.item())
    assert raw.shape == labels.shape


def test_attention_implementation_can_be_switched_on_a_built_model():
    model = small_model(attn_implementation="sdpa")
    pixel_values = make_inputs(height=40, width=56)
    with torch.no_grad():
        sdpa_output = model(pixel_values).harmonized
        model.set_attn_implementation("eager")
        assert model.swinih.config._attn_implementation == "eager"
        torch.testing.assert_close(model(pixel_values).harmonized, sdpa_output, atol=1e-5, rtol=0)


def test_inputs_take_the_model_dtype_and_integer_inputs_raise():
    model = small_model()
    pixel_values = make_inputs()
    with torch.no_grad():
        expected = model(pixel_values).harmonized
        torch.testing.assert_close(model(pixel_values.double()).harmonized, expected, atol=1e-6, rtol=0)
        assert model.to(torch.bfloat16)(pixel_values).harmonized.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="pixel_values must be a float tensor"):
        model((pixel_values * 255).to(torch.uint8))


def test_labels_of_wrong_shape_raise():
    with pytest.raises(ValueError, match="labels must have shape"):
        small_model()(make_inputs(), labels=torch.rand(2, 3, 10, 10))


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (4, 16, 16)])
def test_pixel_values_of_wrong_shape_raise(shape):
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 4, height, width\)"):
        small_model()(torch.rand(shape))


def test_hidden_states_and_attentions():
    model = small_model()
    pixel_values = make_inputs(height=32, width=32)
    with torch.no_grad():
        output = model(pixel_values, output_hidden_states=True, output_attentions=True)
    assert [tuple(h.shape) for h in output.hidden_states] == [
        (2, 16, 8, 8),
        (2, 32, 8, 8),
        (2, 64, 8, 8),
        (2, 64, 8, 8),
    ]
    assert len(output.attentions) == 5
    assert output.attentions[-1].shape == (2, 4, 64, 64)  # global layer: all 64 tokens, 4 heads
    torch.testing.assert_close(output.attentions[-1].sum(-1), torch.ones(2, 4, 64))


def test_gradient_checkpointing_gives_the_same_gradients():
    reference = small_model().train()
    checkpointed = small_model().train()
    checkpointed.load_state_dict(reference.state_dict())
    enable = getattr(checkpointed, "activation_checkpointing_enable", checkpointed.gradient_checkpointing_enable)
    enable()
    pixel_values, labels = make_inputs(height=32, width=32), torch.rand(2, 3, 32, 32)
    for model in (reference, checkpointed):
        model(pixel_values, labels=labels).loss.backward()
    for (name, a), (_, b) in zip(reference.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_padded_size_tiles_every_stage():
    backbone = SwinIHModel(SwinIHConfig())
    assert backbone.padded_size(256, 256) == (256, 256)
    assert backbone.padded_size(300, 200) == (384, 256)
    assert backbone.padded_size(37, 45) == (40, 48)
    with pytest.raises(ValueError, match="needs inputs padded"):
        backbone(torch.rand(1, 4, 300, 200))


def test_window_partition_and_merge_are_inverse():
    tokens = torch.rand(2, 12, 16, 5)
    windows = window_partition(tokens, (4, 8))
    assert windows.shape == (2, 6, 32, 5)
    assert torch.equal(windows[0, 1], tokens[0, :4, 8:16].reshape(32, 5))
    assert torch.equal(window_merge(windows, (4, 8), 12, 16), tokens)


def _sdpa_and_eager_pair(**overrides):
    sdpa = small_model(attn_implementation="sdpa", **overrides)
    eager = small_model(attn_implementation="eager", **overrides)
    with torch.no_grad():  # a non-trivial relative position bias, so that a misplaced bias would show
        for name, parameter in sdpa.named_parameters():
            if name.endswith("relative_position_bias_table"):
                parameter.normal_()
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


# padded sizes -> token grids (window 4): both axes shifted, one axis shifted, a grid side smaller than the window,
# a shift other than window / 2
@pytest.mark.parametrize(
    "size,overrides",
    [((40, 56), {}), ((16, 48), {}), ((64, 12), {}), ((36, 72), {"shift_size": 1}), ((48, 48), VARIANTS["multiscale"])],
)
def test_sdpa_and_eager_agree_in_training_and_gradients(size, overrides):
    sdpa, eager = _sdpa_and_eager_pair(**overrides)
    pixel_values, labels = make_inputs(batch=3, height=size[0], width=size[1]), torch.rand(3, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(pixel_values).harmonized, eager(pixel_values).harmonized, atol=1e-5, rtol=0)
    losses = []
    for model in (sdpa.train(), eager.train()):
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    for (name, a), (_, b) in zip(sdpa.named_parameters(), eager.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("shift", [(0, 0), (2, 2), (2, 0), (0, 1), (3, 1)])
def test_window_order_regions_are_exactly_what_the_shift_mask_allows(shift):
    from lemart_hf.models.swinih.modeling_swinih import shifted_window_mask, window_groups, window_order

    batch, height, width, window = 2, 8, 12, (4, 4)
    order, inverse = window_order(batch, height, width, window, shift, torch.device("cpu"))
    assert torch.equal(order[inverse], torch.arange(batch * height * width))
    # region id of every token, from the window order
    region_of = torch.empty(batch * height * width, dtype=torch.long)
    start, region = 0, 0
    for (rows, cols), count in _checked_groups(window_groups, height, width, window, shift):
        for _ in range(batch * count):
            tokens = order[start : start + rows * cols]
            grid = torch.stack([tokens % (height * width) // width, tokens % width], dim=1).view(rows, cols, 2)
            # a region is a rectangle of the unshifted grid, its tokens row-major
            assert torch.equal(grid[..., 0], grid[0, 0, 0] + torch.arange(rows)[:, None].expand(rows, cols))
            assert torch.equal(grid[..., 1], grid[0, 0, 1] + torch.arange(cols)[None, :].expand(rows, cols))
            region_of[tokens] = region
            start, region = start + rows * cols, region + 1
    assert start == order.numel()
    # two tokens of one image share a region iff the rolled windows + shift mask of the reference let them attend
    rolled = torch.roll(torch.arange(height * width).view(1, height, width, 1), (-shift[0], -shift[1]), (1, 2))
    windows = window_partition(rolled, window)[0, :, :, 0]  # (windows, N) token ids
    allowed = shifted_window_mask(height, width, window, shift, torch.device("cpu")) == 0  # (windows, N, N)
    same_region = region_of[windows][:, :, None] == region_of[windows][:, None, :]
    assert torch.equal(same_region, allowed)


def _checked_groups(groups_fn, height, width, window, shift):
    groups = groups_fn(height, width, window, shift)
    assert sum(rows * cols * count for (rows, cols), count in groups) == height * width
    return groups


def test_constants_cached_under_inference_mode_work_in_training():
    model = small_model(drop_path_rate=0.1)
    pixel_values = make_inputs(height=32, width=32)
    with torch.inference_mode():
        model(pixel_values)
    model.train()(pixel_values, labels=torch.rand(2, 3, 32, 32)).loss.backward()


def test_relative_bias_kept_for_inference_follows_every_change_of_the_table():
    model = small_model()
    fresh = small_model()
    pixel_values = make_inputs(height=40, width=56)

    def harmonize(m):
        with torch.inference_mode():
            return m(pixel_values).harmonized

    harmonize(model)  # fills the kept biases
    tables = [p for name, p in model.named_parameters() if name.endswith("relative_position_bias_table")]
    with torch.no_grad():  # in place, as an optimizer step does
        for table in tables:
            table.add_(torch.randn_like(table))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(harmonize(model), harmonize(fresh), atol=0, rtol=0)

    fresh.load_state_dict(small_model().state_dict())  # load_state_dict copies in place
    model.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(harmonize(model), harmonize(fresh), atol=0, rtol=0)

    for m in (model, fresh):  # new storage for every table, same dtype as the kept biases, values rounded
        m.to(torch.bfloat16).to(torch.float32)
    torch.testing.assert_close(harmonize(model), harmonize(fresh), atol=0, rtol=0)

    model.train()(pixel_values, labels=torch.rand(2, 3, 40, 56)).loss.backward()  # training gathers with autograd
    assert all(table.grad is not None and table.grad.abs().sum() > 0 for table in tables)


def test_torch_compile_has_no_graph_breaks():
    import torch._dynamo

    model = small_model()
    pixel_values, labels = make_inputs(height=40, width=56), torch.rand(2, 3, 40, 56)
    for train in (False, True):
        torch._dynamo.reset()
        model.train(train)
        explanation = torch._dynamo.explain(model)(pixel_values, labels=labels if train else None)
        assert explanation.graph_break_count == 0, [reason.reason for reason in explanation.break_reasons]
        assert explanation.graph_count == 1
    torch._dynamo.reset()
