"""The thesis' four scenarios: CIFAR-10 and Fashion-MNIST × f₊ and f₋, its full protocol."""

from ray import tune

PARAM_SPACE = {
    "dataset": tune.grid_search(["cifar10", "fashion-mnist"]),
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
}
RESOURCES = {"trial_cpu": 1, "trial_gpu": 0.5, "decoder_cpu": 1, "decoder_gpu": 0.25}
