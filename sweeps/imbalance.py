"""Class imbalance: f₋ on Fashion-MNIST with step and exponential profiles down to ratio 0.01."""

from ray import tune

from raycompress.sweeps import GPU_SHARES

PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": "mnistnet",
    "imbalance": tune.grid_search(
        ["none", "step:0.1", "step:0.01", "exponential:0.1", "exponential:0.01"]
    ),
}
RESOURCES = GPU_SHARES
