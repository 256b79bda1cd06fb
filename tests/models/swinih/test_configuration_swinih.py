import pytest

from lemart_hf import SWINIH_PRESETS, SwinIHConfig


def test_defaults_are_the_paper_swinih():
    config = SwinIHConfig()
    assert config.model_type == "lemart_swinih"
    assert config.num_channels == 4 and config.patch_size == 4
    assert config.hidden_sizes == [128, 256, 512]
    assert config.depths == [3, 3, 5] and config.num_heads == [4, 8, 16]
    assert config.window_size == 32 and config.shift_size == 16
    assert config.num_global_layers == 1 and config.stage_resolution_factors == [1, 1, 1]
    assert config.mlp_ratio == 4.0


@pytest.mark.parametrize("name", sorted(SWINIH_PRESETS))
def test_presets_build_and_round_trip(name, tmp_path):
    config = SwinIHConfig.from_preset(name)
    config.save_pretrained(tmp_path)
    assert SwinIHConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown SwinIH preset 'nope'.*swinih-tiny"):
        SwinIHConfig.from_preset("nope")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depths": [2, 2], "num_heads": [2, 4, 8]}, "one entry per stage"),
        ({"embed_dim": 30, "num_heads": [4, 8, 16]}, "not divisible"),
        ({"stage_resolution_factors": [1, 4, 1]}, "powers of 2"),
        ({"num_global_layers": 9}, "num_global_layers"),
        ({"loss_type": "l1"}, "loss_type"),
        ({"shift_size": 32}, "shift_size"),
    ],
)
def test_invalid_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SwinIHConfig(**kwargs)
