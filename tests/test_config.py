import pytest

from biaslab.config import build_config
from biaslab.errors import ConfigError
from biaslab.tracking import MAX_PARAM_VAL_LENGTH, TRUNCATION_MARK, fit_param


@pytest.mark.parametrize("pct", [90, 90.0, "90", "90.0", "9e1"])
def test_pct_forms_log_same_value(plugins, pct):
    config = build_config(plugins, preset="quick", bias="size", cls="3", pct=pct)
    assert config.pct == 90.0
    assert config.params()["pct"] == "90"


@pytest.mark.parametrize("pct", ["ninety", "-1", "100.5", "nan", "inf"])
def test_bad_pct_names_value(plugins, pct):
    with pytest.raises(ConfigError, match=f"pct='{pct}'"):
        build_config(plugins, preset="quick", bias="mislabel", pct=pct)


def test_unknown_bias_lists_available(plugins):
    with pytest.raises(ConfigError, match="unknown bias 'sizes'; available: .*gaussian, mislabel, none, size"):
        build_config(plugins, bias="sizes", pct=10)


def test_unknown_class_lists_names(plugins):
    with pytest.raises(ConfigError, match="unknown class 'kitten'.*3=cat"):
        build_config(plugins, dataset="cifar10", bias="size", cls="kitten", pct=10)


def test_class_name_case_insensitive(plugins):
    config = build_config(plugins, dataset="cifar10", bias="size", cls="CAT", pct=10)
    assert config.cls == "cat"
    assert config.cls_index == 3


def test_bias_needing_class_without_one(plugins):
    with pytest.raises(ConfigError, match="bias 'size' needs a class; give cls"):
        build_config(plugins, bias="size", pct=10)


def test_class_for_bias_without_class(plugins):
    with pytest.raises(ConfigError, match="bias 'mislabel' takes no class"):
        build_config(plugins, bias="mislabel", cls="cat", pct=10)


def test_pct_required_and_rejected(plugins):
    with pytest.raises(ConfigError, match="bias 'mislabel' needs pct"):
        build_config(plugins, bias="mislabel")
    with pytest.raises(ConfigError, match="bias 'none' takes no pct"):
        build_config(plugins, bias="none", pct=30)
    assert build_config(plugins, bias="none", pct="").pct == 0.0


def test_option_bias_does_not_take(plugins):
    with pytest.raises(ConfigError, match="bias 'size' does not take option.*var"):
        build_config(plugins, bias="size", cls="cat", pct=10, bias_options={"var": "0.1"})


def test_presets_and_overrides(plugins):
    paper = build_config(plugins)
    assert (paper.dataset, paper.epochs, paper.lr_boundaries) == ("cifar10", 200, (80, 120, 160, 180))
    quick = build_config(plugins, preset="quick", epochs="5", batch_size=32)
    assert (quick.dataset, quick.epochs, quick.batch_size) == ("digits", 5, 32)
    assert quick.learning_rate_at(0) == pytest.approx(1e-3)
    assert quick.learning_rate_at(8) == pytest.approx(1e-4)
    assert quick.learning_rate_at(19) == pytest.approx(5e-7)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": "0"}, "epochs='0' is too small"),
        ({"epochs": "2.5"}, "epochs='2.5' is not a whole number"),
        ({"model": "vgg"}, "unknown model 'vgg'"),
        ({"lr_boundaries": "5,3", "lr_factors": "0.1,0.01"}, "increasing order"),
        ({"lr_boundaries": "5", "lr_factors": "0.1,0.01"}, "one factor per boundary"),
        ({"landscape_resolution": "10"}, "landscape_resolution=10 is even"),
        ({"landscape_points": "1"}, "landscape_points='1' is too small"),
        ({"landscape_lo": "1", "landscape_hi": "-1"}, "empty or reversed"),
        ({"landscape_candidates": "1"}, "landscape_candidates='1' is too small"),
        ({"landscape_n_directions": "0"}, "landscape_n_directions='0' is too small"),
        ({"landscape_direction": "sideways"}, "unknown direction 'sideways'"),
        ({"flatness": "hessian_eigs,sharp"}, "unknown measure 'sharp'"),
        ({"data_dir": "somewhere"}, "takes no data_dir"),
    ],
)
def test_bad_settings_name_value(plugins, settings, message):
    with pytest.raises(ConfigError, match=message):
        build_config(plugins, preset="quick", **settings)


def test_unknown_preset_lists_presets(plugins):
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of: paper, quick"):
        build_config(plugins, preset="fast")


def test_long_option_value_fits_param(plugins):
    long_value = "x" * (MAX_PARAM_VAL_LENGTH + 500)
    fitted = fit_param(long_value)
    assert len(fitted) == MAX_PARAM_VAL_LENGTH
    assert fitted.endswith(TRUNCATION_MARK)
    assert fit_param("short") == "short"


def test_params_are_flat_strings(plugins):
    config = build_config(plugins, preset="quick", bias="gaussian", cls="3", pct="60")
    params = config.params()
    assert all(isinstance(value, str) for value in params.values())
    for key in ("model", "dataset", "bias", "cls", "pct", "seed", "preset"):
        assert key in params
    assert params["bias.var"] == "0.02"
    assert params["bias.space"] == "input"
