"""Does compression track generalisation? f₋ on Fashion-MNIST, a 4-axis grid × 2 seeds, ranked
against the literature's generalisation measures (docs/generalisation.md)."""

from ray import tune

# 3 × 2 × 2 × 2 configurations × 2 seeds = 48 trials, each trained to the thesis' stop (a mean
# step loss of 0.02, or 50 epochs: such runs are marked), neural collapse every epoch, the
# baselines where training stops, and 𝒱-information there at the last hidden layer, whose
# decoder is the affine optimum (L-BFGS, cheap). Sized for a 2-core CPU: one core a trial.
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": "mnistnet",
    "download": False,
    "lr": tune.grid_search([2e-3, 4e-3, 8e-3]),
    "batch_size": tune.grid_search([200, 400]),
    "widths": tune.grid_search([[8, 16, 32], [16, 32, 64]]),
    "train_size": tune.grid_search([2_500, 5_000]),
    "seed": tune.grid_search([0, 1]),
    "baselines": True,  # the measures every NC and 𝒱-information measure is ranked against
    "vinfo_schedule": "stop",
    "vinfo_layers": [-1],
}
RESOURCES = {
    "trial_cpu": 0.5, "trial_gpu": 0, "decoder_cpu": 0.5, "decoder_gpu": 0, "decoder_bundles": 1,
}  # fmt: skip
