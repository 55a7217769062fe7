"""Offline demo: f₋ and an MLP on the bundled Fashion-MNIST subset, every metric, minutes."""

from ray import tune

PARAM_SPACE = {
    "dataset": "fashion-mnist-demo",
    "model": tune.grid_search(["mnistnet", "mlp"]),
    "train_size": 500,
    "batch_size": 100,
    "epochs": 3,
    "vinfo_schedule": "every",
    # the linear family: every value the convex optimum, certified, in seconds; its held-out
    # sufficiency a trained affine decoder
    "decoder_family": "linear",
    "held_out": True,
}
RESOURCES = {"trial_cpu": 0.5, "trial_gpu": 0, "decoder_cpu": 0.5, "decoder_gpu": 0}
