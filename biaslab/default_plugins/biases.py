"""Built-in biases: none, mislabel, size and gaussian, registered through the public hook."""

from __future__ import annotations

import math
import warnings

import numpy as np

from biaslab.biases import BiasInput, BiasOption, BiasResult, BiasSpec, count_for_pct
from biaslab.errors import ConfigError
from biaslab.hookspecs import hookimpl

DEFAULT_VARIANCE = 0.02


def apply_none(data: BiasInput) -> BiasResult:
    return BiasResult(
        x=data.x, y=data.y, indices=np.arange(len(data.y)), manifest=[], stats={"bias_realized_pct": 0.0}
    )


def _apportion(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``sizes`` with the largest-remainder method."""
    exact = total * sizes / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = total - int(quotas.sum())
    # ties go to the lower index, so the split depends on nothing random
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:remainder]] += 1
    return quotas


def _draw_other_labels(old: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Give every sample a new label different from its old one, keeping the label multiset.

    The new labels are a random permutation of the old ones; each sample that drew its own class
    swaps with a random partner for which the swap is valid. With flips spread over classes in
    proportion to their size, each new label is uniform over the other classes and class counts
    do not change. Where one class holds more than half of the flips, no such permutation exists,
    and the rest is drawn uniformly from the other classes independently.
    """
    new = old[rng.permutation(len(old))]
    for i in np.flatnonzero(new == old):
        if new[i] != old[i]:
            continue  # an earlier swap already fixed this sample
        c = old[i]
        partners = np.flatnonzero((old != c) & (new != c))
        if partners.size:
            j = rng.choice(partners)
            new[i], new[j] = new[j], c
        else:
            new[i] = (c + rng.integers(1, num_classes)) % num_classes
    return new


def apply_mislabel(data: BiasInput) -> BiasResult:
    num_classes = len(data.class_names)
    rng = data.rng()
    sizes = np.bincount(data.y, minlength=num_classes)
    total = count_for_pct(data.pct, len(data.y))
    quotas = _apportion(total, sizes.astype(np.float64))

    chosen = []
    for cls in range(num_classes):
        members = np.flatnonzero(data.y == cls)
        chosen.append(rng.choice(members, size=quotas[cls], replace=False))
    flipped = np.sort(np.concatenate(chosen)).astype(np.int64)

    y = data.y.copy()
    y[flipped] = _draw_other_labels(data.y[flipped], num_classes, rng)
    manifest = [(int(i), "relabel", int(data.y[i]), int(y[i])) for i in flipped]
    realized = 100.0 * len(flipped) / len(y) if len(y) else 0.0
    return BiasResult(data.x, y, np.arange(len(y)), manifest, {"bias_realized_pct": realized})


def apply_size(data: BiasInput) -> BiasResult:
    members = np.flatnonzero(data.y == data.cls)
    count = count_for_pct(data.pct, len(members))
    if count == len(data.y):
        raise ConfigError(
            f"size bias with cls={data.class_names[data.cls]} pct={data.pct:g} would remove all "
            f"{len(data.y)} training samples; lower pct or choose another class"
        )
    if count == len(members) and count > 0:
        warnings.warn(
            f"size bias with pct={data.pct:g} removes class {data.class_names[data.cls]!r} from the training split entirely",
            UserWarning,
            stacklevel=2,
        )
    removed = np.sort(data.rng().choice(members, size=count, replace=False))
    keep = np.setdiff1d(np.arange(len(data.y)), removed)
    manifest = [(int(i), "remove", int(data.y[i]), -1) for i in removed]
    realized = 100.0 * count / len(members) if len(members) else 0.0
    return BiasResult(data.x[keep], data.y[keep], keep, manifest, {"bias_realized_pct": realized})


def check_gaussian(options: dict) -> dict:
    if options["var"] is not None and options["std"] is not None:
        raise ConfigError(
            f"gaussian bias got both var={options['var']} and std={options['std']}; give only one of them"
        )
    for name in ("var", "std"):
        if options[name] is not None and options[name] < 0:
            raise ConfigError(f"gaussian bias option {name}={options[name]} is negative; give a value >= 0")
    if options["clip"] and options["space"] != "pixel":
        raise ConfigError("gaussian bias option clip=true only applies with space=pixel; drop clip or set space=pixel")
    if options["mean"] != "class":
        try:
            float(options["mean"])
        except ValueError:
            raise ConfigError(
                f"gaussian bias option mean={options['mean']!r} is invalid; give 'class' or a number such as 0"
            ) from None
    if options["var"] is None and options["std"] is None:
        return {**options, "var": DEFAULT_VARIANCE}
    return options


def apply_gaussian(data: BiasInput) -> BiasResult:
    options = data.options
    std = options["std"] if options["std"] is not None else math.sqrt(options["var"])
    members = np.flatnonzero(data.y == data.cls)
    count = count_for_pct(data.pct, len(members))
    rng = data.rng()
    noisy = np.sort(rng.choice(members, size=count, replace=False))

    # the noise lives in the model's input space (after preprocessing) unless space=pixel
    source = data.x_pixels if options["space"] == "pixel" else data.x
    if options["mean"] == "class":
        mean = float(source[members].mean()) if members.size else 0.0
    else:
        mean = float(options["mean"])
    noise = rng.normal(mean, std, size=(count, *source.shape[1:])).astype(np.float32)

    x = data.x.copy()
    if options["space"] == "pixel":
        pixels = data.x_pixels[noisy] + noise
        if options["clip"]:
            pixels = np.clip(pixels, 0.0, 1.0)
        x[noisy] = data.preprocess(pixels)
    else:
        x[noisy] = data.x[noisy] + noise

    manifest = [(int(i), "noise", int(data.y[i]), int(data.y[i])) for i in noisy]
    stats = {
        "bias_realized_pct": 100.0 * count / len(members) if len(members) else 0.0,
        "bias_noise_mean": mean,
        "bias_noise_std": float(std),
    }
    return BiasResult(x, data.y.copy(), np.arange(len(data.y)), manifest, stats)


BUILTIN_BIASES = (
    BiasSpec(
        name="none",
        description="the unbiased baseline: the clean training split unchanged",
        apply=apply_none,
        takes_pct=False,
    ),
    BiasSpec(
        name="mislabel",
        description="give exactly round(pct% of N) samples a wrong label, spread over classes by size",
        apply=apply_mislabel,
    ),
    BiasSpec(
        name="size",
        description="remove exactly round(pct%) of the samples of class cls",
        apply=apply_size,
        needs_class=True,
    ),
    BiasSpec(
        name="gaussian",
        description="add Gaussian noise to exactly round(pct%) of the images of class cls",
        apply=apply_gaussian,
        needs_class=True,
        options=(
            BiasOption("var", float, None, "noise variance (default 0.02 when neither var nor std is given)"),
            BiasOption("std", float, None, "noise standard deviation, instead of var"),
            BiasOption("space", str, "input", "where noise is added: input (after preprocessing) or pixel ([0, 1] scale)",
                       choices=("input", "pixel")),
            BiasOption("clip", bool, False, "clip noisy pixels to [0, 1] (space=pixel only)"),
            BiasOption("mean", str, "class", "noise mean: 'class' (mean of the class's images in that space) or a number"),
        ),
        check=check_gaussian,
    ),
)


@hookimpl
def biaslab_register_biases(register):
    for spec in BUILTIN_BIASES:
        register(spec)
