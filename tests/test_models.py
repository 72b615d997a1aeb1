import keras
import numpy as np
import pytest

from biaslab.errors import ConfigError
from biaslab.models import build_model, parameter_counts


@pytest.mark.parametrize(
    "name, total, trainable, non_trainable",
    [("resnet20", 274_442, 273_066, 1_376), ("sharesnet20", 175_130, 173_754, 1_376)],
)
def test_parameter_counts_cifar(name, total, trainable, non_trainable):
    counts = parameter_counts(build_model(name, (32, 32, 3), 10))
    assert counts["total"] == total
    assert counts["trainable"] == trainable
    assert counts["non_trainable"] == non_trainable


def test_sharesnet_shares_one_kernel_per_block():
    model = build_model("sharesnet20", (32, 32, 3), 10)
    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    names = [layer.name for layer in conv_layers]
    # 7 shared blocks keep conv1 only; the downsampling blocks of stages 2 and 3 keep both
    assert "stage1_block1_conv2" not in names
    assert "stage2_block1_conv2" in names
    assert "stage3_block1_conv2" in names
    paths = [variable.path for variable in model.trainable_weights]
    assert len(paths) == len(set(paths))


def test_digits_shape_keeps_structure():
    model = build_model("resnet20", (8, 8, 1), 10)
    assert model.output_shape == (None, 10)
    conv_count = sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    assert conv_count == 21  # 19 3x3 convolutions plus 2 projection shortcuts
    probabilities = model.predict(np.zeros((2, 8, 8, 1), np.float32), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_initial_weights():
    first = build_model("resnet20", (8, 8, 1), 10, seed=3).get_weights()
    second = build_model("resnet20", (8, 8, 1), 10, seed=3).get_weights()
    other = build_model("resnet20", (8, 8, 1), 10, seed=4).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="resnet20, sharesnet20"):
        build_model("resnet56", (32, 32, 3), 10)
