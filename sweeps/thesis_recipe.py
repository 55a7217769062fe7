"""The thesis' networks on Fashion-MNIST trained as the thesis' code trains them (0..255
pixels, bf16-true, compiled): f₊ and f₋ × seeds 0, 1, 2, NC every epoch, no 𝒱-information."""

from ray import tune

from raycompress import protocol
from raycompress.trial import THESIS_RECIPE

# The same 10 000 / 10 000 protocol as thesis_fmnist, each seed with its own training subset;
# accuracy against the defaults: docs/reproduction.md, "Seeds".
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "seed": tune.grid_search([0, 1, 2]),
    "train_size": 10_000,
    "download": False,
    "vinfo_schedule": "none",
    "vinfo_protocol": protocol.THESIS,  # none is measured; said, so that no default is read
    **THESIS_RECIPE,
}
# One single-threaded trial per core; no 𝒱-information, so no decoder bundles.
RESOURCES = {"trial_cpu": 1, "trial_gpu": 0, "decoder_bundles": 0}
