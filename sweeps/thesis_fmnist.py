"""The thesis on Fashion-MNIST (f₊ and f₋), sized for a 2-core CPU: docs/reproduction.md."""

from ray import tune

# f₋'s 𝒱-information at log-spaced epochs and where training stops, decoders capped at the
# thesis' sufficiency budget (20 epochs); f₊'s decoders would cost hours per measurement on
# two cores (docs/reproduction.md has the times), so f₊ gets the NC metrics only.
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "train_size": 10_000,
    "download": False,
    "vinfo_schedule": tune.sample_from(
        lambda config: "log:3" if config["model"] == "mnistnet" else "none"
    ),
    "decoder_epochs": 20,
}
RESOURCES = {"trial_cpu": 0.5, "trial_gpu": 0, "decoder_cpu": 0.5, "decoder_gpu": 0}
