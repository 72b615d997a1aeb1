"""ResNet-20 and the weight-shared ShaResNet-20 as Keras 3 functional models.

Both follow the classic CIFAR ResNet v1 (He et al. 2016, section 4.2): a 3x3 stem convolution,
three stages of three basic blocks with 16, 32 and 64 filters, BatchNormalization and ReLU,
a 1x1 convolution as the shortcut where the shape changes, global average pooling and a softmax
Dense layer. Convolutions use He normal initialization, a bias, and L2 1e-4 on the kernel.

For 32x32x3 input and 10 classes:

- ``resnet20``: 274,442 parameters (273,066 trainable, 1,376 non-trainable);
- ``sharesnet20``: 175,130 parameters (173,754 trainable). In every block whose two 3x3
  convolutions have the same input and output shape, one Conv2D layer (kernel and bias) is
  called twice; the downsampling first block of stages 2 and 3 keeps two. BN layers stay separate.
"""

from __future__ import annotations

import keras

from biaslab.errors import ConfigError

MODELS = ("resnet20", "sharesnet20")
STAGE_FILTERS = (16, 32, 64)
BLOCKS_PER_STAGE = 3
L2_WEIGHT = 1e-4


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(L2_WEIGHT),
        name=name,
    )


def _block(x, filters: int, strides: int, share: bool, name: str):
    """Build one basic block: conv-BN-ReLU-conv-BN, the shortcut added, then ReLU."""
    first = _conv(filters, 3, strides, f"{name}_conv1")
    # a shared block calls its first convolution a second time instead of owning a second one
    second = first if share else _conv(filters, 3, 1, f"{name}_conv2")

    y = first(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = second(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)

    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut")(x)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_relu2")(y)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> keras.Model:
    """Build ``resnet20`` or ``sharesnet20`` for images of ``input_shape`` (height, width, channels).

    ``seed`` seeds Keras' global generators, so the same seed gives the same initial weights.
    Smaller inputs (digits are 8x8x1) keep the same structure: the stride-2 stages shrink the map
    to 2x2 and global average pooling still applies.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(f"input shape {input_shape!r} is not (height, width, channels)")
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes} is too small; a classifier needs at least 2 classes")
    if seed is not None:
        keras.utils.set_random_seed(seed)

    share = name == "sharesnet20"
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(STAGE_FILTERS[0], 3, 1, "stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)

    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, BLOCKS_PER_STAGE + 1):
            downsample = stage > 1 and block == 1
            x = _block(
                x,
                filters,
                strides=2 if downsample else 1,
                share=share and not downsample,
                name=f"stage{stage}_block{block}",
            )

    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer="he_normal", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Count total, trainable and non-trainable parameters, each shared variable once."""
    trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
    non_trainable = sum(int(v.numpy().size) for v in model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}
