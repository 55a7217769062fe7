"""Learning rate: f₊ and f₋ on Fashion-MNIST at five learning rates around the thesis' 2e-3."""

from ray import tune

from raycompress.sweeps import GPU_SHARES

PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "lr": tune.grid_search([2e-4, 6e-4, 2e-3, 6e-3, 2e-2]),
}
RESOURCES = GPU_SHARES
