"""Tests of probe_landscape end to end on a small Keras model and the digits data."""

import json

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from biaslab.errors import ConfigError
from biaslab.landscape import LandscapeSettings, probe_landscape
from biaslab.landscape.engine import LandscapeEvaluator
from biaslab.landscape.store import SurfaceStore
from biaslab.plugins import load_plugins

SMALL = LandscapeSettings(n_directions=2, points_1d=5, n_candidates=4, resolution=5, batch_size=64)


def build_model(seed: int = 0) -> keras.Model:
    """A small conv net with BatchNormalization and a softmax Dense layer on 8x8x1 input."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Activation("relu")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(hidden)
    model = keras.Model(inputs, outputs, name="tiny")
    model.get_layer("bn").moving_mean.assign(np.full(4, 0.1, dtype=np.float32))
    return model


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images[:200] / 16.0).astype(np.float32)[..., None]
    y = data.target[:200].astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False)


@pytest.fixture
def count_points(monkeypatch):
    """Count the points the compiled evaluator computes, calling the real method."""
    calls = []
    original = LandscapeEvaluator.evaluate

    def counted(self, a, b=0.0):
        calls.append((a, b))
        return original(self, a, b)

    monkeypatch.setattr(LandscapeEvaluator, "evaluate", counted)
    return calls


@pytest.fixture(scope="module")
def full_probe(tmp_path_factory, digits, plugins):
    """One probe with 1D curves and a 2D surface, shared by the tests that only read its outcome."""
    x, y = digits
    model = build_model()
    out_dir = tmp_path_factory.mktemp("full_probe")
    before = [np.array(variable.numpy(), copy=True) for variable in model.variables]
    probabilities = model(x, training=False)
    plain_ce = float(keras.ops.mean(keras.losses.categorical_crossentropy(keras.ops.one_hot(y, 10), probabilities)))
    meta = {"run_id": "run-1", "split": "test", "model": "tiny", "note": "kept"}

    result = probe_landscape(model, x, y, SMALL, out_dir, plugins, checkpoint_hash="hash-1", meta=meta, progress=False)

    return {"model": model, "out_dir": out_dir, "before": before, "plain_ce": plain_ce, "result": result, "meta": meta}


def test_probe_writes_files_and_metrics(full_probe):
    result, out_dir = full_probe["result"], full_probe["out_dir"]

    names = {path.name for path in result.files["landscape"]}
    assert names == {"directions_1d.npz", "curves_1d.npz", "directions_2d.npz", "surface_2d.npz"}
    assert len(result.files["plots"]) == 9
    for folder, paths in result.files.items():
        for path in paths:
            assert path.exists()
            assert path.parent == out_dir / folder
    for prefix in ("landscape_1d", "landscape_2d"):
        for metric in ("ce", "mse", "acc"):
            for summary in ("center", "rise_0.25", "rise_0.5", "rise_1", "curvature"):
                assert f"{prefix}_{metric}_{summary}" in result.metrics
    assert "landscape_1d_ce_rise_1_std" in result.metrics
    assert abs(result.metrics["landscape_2d_cosine"]) < 1.0


def test_probe_file_metadata(full_probe):
    result, out_dir = full_probe["result"], full_probe["out_dir"]

    surface = SurfaceStore.load(out_dir / "landscape" / "surface_2d.npz")
    assert surface.values["ce"].shape == (5, 5)
    assert surface.complete
    assert surface.metadata["run_id"] == "run-1"
    assert surface.metadata["checkpoint_hash"] == "hash-1"
    assert surface.metadata["split"] == "test"
    assert surface.metadata["sample_count"] == 200
    assert surface.metadata["direction"] == "filter"
    assert surface.metadata["seed"] == 0
    assert surface.metadata["grid"] == {"lo": -1.0, "hi": 1.0, "resolution": 5}
    assert surface.metadata["meta"] == {"note": "kept"}
    assert surface.metadata["cosine"] == result.metrics["landscape_2d_cosine"]
    curves = SurfaceStore.load(out_dir / "landscape" / "curves_1d.npz")
    assert curves.values["ce"].shape == (2, 5)
    with np.load(out_dir / "landscape" / "directions_2d.npz") as stored:
        metadata = json.loads(str(stored["__metadata__"]))
    assert metadata["direction"] == "filter"
    assert metadata["seed"] == 0


def test_probe_center_equals_plain_evaluation(full_probe):
    metrics = full_probe["result"].metrics

    assert metrics["landscape_1d_ce_center"] == pytest.approx(full_probe["plain_ce"], abs=1e-5)
    assert metrics["landscape_2d_ce_center"] == pytest.approx(full_probe["plain_ce"], abs=1e-5)


def test_probe_restores_every_variable(full_probe):
    before = full_probe["before"]
    after = [variable.numpy() for variable in full_probe["model"].variables]

    assert len(after) == len(before)
    for previous, current in zip(before, after):
        assert np.array_equal(previous, current)


def test_finished_probe_is_reused(digits, plugins, full_probe, count_points):
    x, y = digits
    model, out_dir, meta = full_probe["model"], full_probe["out_dir"], full_probe["meta"]

    again = probe_landscape(model, x, y, SMALL, out_dir, plugins, checkpoint_hash="hash-1", meta=meta, progress=False)

    assert count_points == []
    assert again.metrics == full_probe["result"].metrics


def test_probe_restores_after_error(tmp_path, digits, plugins, monkeypatch):
    x, y = digits
    model = build_model()
    before = [np.array(variable.numpy(), copy=True) for variable in model.variables]
    original = LandscapeEvaluator.evaluate
    calls = []

    def failing(self, a, b=0.0):
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted for the test")
        return original(self, a, b)

    monkeypatch.setattr(LandscapeEvaluator, "evaluate", failing)
    with pytest.raises(KeyboardInterrupt):
        probe_landscape(model, x, y, SMALL, tmp_path, plugins, progress=False)

    for previous, variable in zip(before, model.variables):
        assert np.array_equal(previous, variable.numpy())
    partial = SurfaceStore.load(tmp_path / "landscape" / "curves_1d.npz")
    assert partial.done.sum() == 2


def test_same_seed_same_surface(tmp_path, digits, plugins, full_probe):
    x, y = digits
    model = build_model()
    other_seed = LandscapeSettings(**{**SMALL.__dict__, "seed": 1})

    again = probe_landscape(model, x, y, SMALL, tmp_path / "again", plugins, progress=False, do_1d=False)
    other = probe_landscape(model, x, y, other_seed, tmp_path / "other", plugins, progress=False, do_1d=False)

    first_values = SurfaceStore.load(full_probe["out_dir"] / "landscape" / "surface_2d.npz").values
    again_values = SurfaceStore.load(tmp_path / "again" / "landscape" / "surface_2d.npz").values
    other_values = SurfaceStore.load(tmp_path / "other" / "landscape" / "surface_2d.npz").values
    for metric in ("ce", "mse", "acc"):
        np.testing.assert_array_equal(first_values[metric], again_values[metric])
    assert not np.array_equal(first_values["ce"], other_values["ce"])
    assert again.metrics["landscape_2d_cosine"] == full_probe["result"].metrics["landscape_2d_cosine"]
    assert other.metrics["landscape_2d_cosine"] != again.metrics["landscape_2d_cosine"]


def test_new_checkpoint_hash_recomputes(tmp_path, digits, plugins, count_points):
    x, y = digits
    model = build_model()
    probe_landscape(model, x, y, SMALL, tmp_path, plugins, checkpoint_hash="h", progress=False, do_2d=False)
    assert len(count_points) == 10

    probe_landscape(model, x, y, SMALL, tmp_path, plugins, checkpoint_hash="retrained", progress=False, do_2d=False)

    assert len(count_points) == 20


def test_changed_weights_recompute(tmp_path, digits, plugins, count_points):
    x, y = digits
    probe_landscape(build_model(seed=0), x, y, SMALL, tmp_path, plugins, progress=False, do_2d=False)

    probe_landscape(build_model(seed=1), x, y, SMALL, tmp_path, plugins, progress=False, do_2d=False)

    assert len(count_points) == 20


def test_probe_only_1d(tmp_path, digits, plugins, count_points):
    x, y = digits

    result = probe_landscape(build_model(), x, y, SMALL, tmp_path, plugins, progress=False, do_2d=False)

    assert len(count_points) == 10
    assert [path.name for path in result.files["landscape"]] == ["directions_1d.npz", "curves_1d.npz"]
    assert [path.name for path in result.files["plots"]] == ["curves_1d.png"]
    assert "landscape_2d_cosine" not in result.metrics


def test_probe_only_2d_random(tmp_path, digits, plugins, count_points):
    x, y = digits
    settings = LandscapeSettings(**{**SMALL.__dict__, "direction": "random", "resolution": 3})

    result = probe_landscape(build_model(), x, y, settings, tmp_path, plugins, progress=False, do_1d=False)

    assert len(count_points) == 9
    assert "landscape_1d_ce_center" not in result.metrics
    assert "landscape_2d_ce_curvature" in result.metrics


@pytest.mark.parametrize(
    "changes, value",
    [
        ({"points_1d": 4}, "4"),
        ({"points_1d": 1}, "1"),
        ({"resolution": 50}, "50"),
        ({"resolution": 2}, "2"),
        ({"lo": 1.0, "hi": -1.0}, "lo=1.0"),
        ({"lo": 0.5, "hi": 0.5}, "lo=0.5"),
        ({"lo": 0.25, "hi": 1.0}, "lo=0.25"),
        ({"hi": float("nan")}, "nan"),
        ({"n_candidates": 1}, "n_candidates=1"),
        ({"n_directions": 0}, "n_directions=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"seed": -3}, "seed=-3"),
        ({"points_1d": 5.0}, "5.0"),
        ({"direction": "sideways"}, "sideways"),
    ],
)
def test_bad_settings_raise_config_error(tmp_path, digits, plugins, count_points, changes, value):
    x, y = digits
    settings = LandscapeSettings(**{**SMALL.__dict__, **changes})

    with pytest.raises(ConfigError) as raised:
        settings.validate(plugins)
    assert value in str(raised.value)
    with pytest.raises(ConfigError):
        probe_landscape(build_model(), x, y, settings, tmp_path, plugins, progress=False)
    assert count_points == []


def test_unknown_direction_lists_choices(plugins):
    with pytest.raises(ConfigError, match="filter, random"):
        LandscapeSettings(direction="sideways").validate(plugins)


def test_bad_data_raises_config_error(tmp_path, digits, plugins):
    x, y = digits
    model = build_model()

    with pytest.raises(ConfigError, match="labels range from 0 to 12"):
        probe_landscape(model, x, np.where(y == 9, 12, y), SMALL, tmp_path, plugins, progress=False)
    with pytest.raises(ConfigError, match="float64"):
        probe_landscape(model, x, y.astype(np.float64), SMALL, tmp_path, plugins, progress=False)
    with pytest.raises(ConfigError, match="200 evaluation images and 199 labels"):
        probe_landscape(model, x, y[:-1], SMALL, tmp_path, plugins, progress=False)


def test_meta_must_be_json(tmp_path, digits, plugins):
    x, y = digits

    with pytest.raises(ConfigError, match="JSON"):
        probe_landscape(build_model(), x, y, SMALL, tmp_path, plugins, meta={"when": object()}, progress=False)


def test_logits_model_is_rejected(tmp_path, digits, plugins):
    x, y = digits
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)

    with pytest.raises(ConfigError, match="softmax"):
        probe_landscape(model, x, y, SMALL, tmp_path, plugins, progress=False)
