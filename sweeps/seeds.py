"""The thesis grid (CIFAR-10, Fashion-MNIST × f₊, f₋) repeated over five seeds."""

from ray import tune

from raycompress.sweeps import GPU_SHARES

PARAM_SPACE = {
    "dataset": tune.grid_search(["cifar10", "fashion-mnist"]),
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "seed": tune.grid_search([0, 1, 2, 3, 4]),
}
RESOURCES = GPU_SHARES
