"""Section "representation": what losslessness costs or buys in linearly readable features.

Linear probes read the features of Flow-JEPA, raw pixels, an untrained Flow-JEPA and the LeJEPA-style
conv encoder (same projector and SIGReg, same training wall time): logistic regression on image classes,
ridge regression on the cartpole state. Probes fit on training images (or training episodes) and are
scored on held-out validation images (or held-out episodes).
"""

from __future__ import annotations

from torch import Tensor

from bench.context import BenchContext
from bench.datasets import ImageSet
from bench.measures import classification_scores, features_of, pixel_features, random_flowjepa, state_scores
from bench.plots import grouped_bars
from bench.probes import STATE_TARGET_NAMES
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec, main_variants
from flowjepa.config import FlowJEPAConfig
from flowjepa.model import FlowJEPA

KEY = "representation"
TITLE = "Representation: linear probes on Flow-JEPA, pixels, an untrained flow and a conv encoder"
ACTNORM_BATCH = 16


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Return Flow-JEPA and the conv encoder of each dataset."""
    return [spec for dataset in ("images", "cartpole") for spec in main_variants(dataset)[::2]]


def encoder_features(context: BenchContext, dataset: str, train: ImageSet, test: ImageSet):
    """Return ``{encoder name: (train features, test features)}`` for every encoder compared on ``dataset``."""
    features: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {
        "raw pixels": (pixel_features(train.images), pixel_features(test.images))
    }
    flowjepa = context.model(f"{dataset}-flowjepa")
    model = FlowJEPA.from_pretrained(flowjepa.path)
    features["Flow-JEPA"] = (features_of(model, train.images), features_of(model, test.images))

    untrained = random_flowjepa(
        FlowJEPAConfig.from_dict(flowjepa.config), train.images[:ACTNORM_BATCH], context.options.seed
    )
    features["Flow-JEPA, untrained"] = (features_of(untrained, train.images), features_of(untrained, test.images))

    conv = context.model(f"{dataset}-conv-jepa").load()
    features["conv encoder (LeJEPA-style)"] = (features_of(conv, train.images), features_of(conv, test.images))

    if dataset in context.given:
        given = FlowJEPA.from_pretrained(context.given[dataset].path)
        features[context.given[dataset].label] = (features_of(given, train.images), features_of(given, test.images))
    return features


def run(context: BenchContext) -> SectionResult:
    """Fit and score every probe on both datasets."""
    budget = context.budget
    result = SectionResult(KEY, TITLE)

    # Image classes.
    train = context.data.images("train", budget.probe_train_images, seed=2)
    test = context.data.images("val", budget.probe_test_images, seed=1)
    image_scores: dict[str, dict[str, float]] = {}
    dims: dict[tuple[str, str], int] = {}
    for encoder, (train_features, test_features) in encoder_features(context, "images", train, test).items():
        image_scores[encoder] = classification_scores(train_features, train, test_features, test, budget.probe_epochs)
        dims.update({(encoder, name): int(value.shape[1]) for name, value in train_features.items()})
    pixels = image_scores["raw pixels"]["pixels"]
    conv = image_scores["conv encoder (LeJEPA-style)"]["feature map"]
    rows = [
        [encoder, name, dims[(encoder, name)], top1, ratio(top1, pixels), ratio(top1, conv)]
        for encoder, scores in image_scores.items()
        for name, top1 in scores.items()
    ]
    result.tables.append(
        Table(
            caption=(
                f"Top-1 of a logistic-regression probe on {context.data.image_description}: fitted on "
                f"{len(train)} train images, scored on {len(test)} val images."
            ),
            columns=["encoder", "feature", "dimension", "top-1", "/ pixels", "/ conv feature map"],
            rows=rows,
        )
    )

    # Cartpole state.
    train = context.data.cartpole("train")
    test = context.data.cartpole("test")
    state: dict[str, dict[str, dict[str, float]]] = {}
    for encoder, (train_features, test_features) in encoder_features(context, "cartpole", train, test).items():
        state[encoder] = state_scores(train_features, train, test_features, test)
    pixel_mean = state["raw pixels"]["pixels"]["mean"]
    conv_mean = state["conv encoder (LeJEPA-style)"]["feature map"]["mean"]
    rows = [
        [encoder, name, *[scores[target] for target in STATE_TARGET_NAMES], scores["mean"]]
        + [ratio(scores["mean"], pixel_mean), ratio(scores["mean"], conv_mean)]
        for encoder, by_feature in state.items()
        for name, scores in by_feature.items()
    ]
    result.tables.append(
        Table(
            caption=(
                f"R^2 of a ridge probe of the cartpole state from one {budget.image_size} px frame: fitted on "
                f"{len(train)} frames of {budget.cartpole_train_episodes} episodes, scored on {len(test)} frames of "
                f"{budget.cartpole_test_episodes} held-out episodes."
            ),
            columns=["encoder", "feature", "x", "cos angle", "sin angle", "x velocity", "angular velocity", "mean R^2"]
            + ["/ pixels", "/ conv feature map"],
            rows=rows,
        )
    )

    plot = "representation.png"
    pairs = [(encoder, name) for encoder, scores in image_scores.items() for name in scores]
    pairs += [(encoder, name) for encoder, by_feature in state.items() for name in by_feature]
    pairs = list(dict.fromkeys(pairs))
    grouped_bars(
        context.options.out / plot,
        [f"{encoder}: {name}" for encoder, name in pairs],
        {
            "image top-1": [image_scores.get(encoder, {}).get(name) for encoder, name in pairs],
            "cartpole mean R^2": [state.get(encoder, {}).get(name, {}).get("mean") for encoder, name in pairs],
        },
        "probe score",
        "Linear probes (higher is better)",
    )
    result.plots.append(plot)
    result.notes.append(
        "Features: z is the whole flow latent (every bit of the image, plus the augmentation channels), code is "
        "the linear VAE code W z, projector is the projection head's output, feature map is the conv encoder's "
        "output (the shape of z). The untrained Flow-JEPA has ActNorm set from one batch and couplings at "
        "their identity initialisation, so its z is normalised logit pixels and its code a random linear map of "
        "them. The cartpole frames come from the swing-up task under the balance policy, so the pole takes "
        "every angle. Velocities cannot be read from a single frame, so their R^2 near 0 is expected. Features "
        "are standardised with the train split's statistics, and near-constant columns are zeroed. The ridge "
        "penalty is chosen on the last fifth of the training episodes."
    )
    result.data = {"images": {"top1": image_scores, "dims": {f"{e}: {n}": d for (e, n), d in dims.items()}}}
    result.data["cartpole"] = {"r2": state}
    return result
