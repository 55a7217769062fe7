"""The thesis' four scenarios: CIFAR-10 and Fashion-MNIST × f₊ and f₋, its full protocol."""

from ray import tune

from raycompress.sweeps import GPU_SHARES

PARAM_SPACE = {
    "dataset": tune.grid_search(["cifar10", "fashion-mnist"]),
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
}
RESOURCES = GPU_SHARES
