"""Does compression track generalisation? f₋ on Fashion-MNIST, a 4-axis grid × 3 seeds, ranked
against the literature's generalisation measures (docs/generalisation.md)."""

from ray import tune

from raycompress import protocol

# 3 × 2 × 2 × 2 configurations × 3 seeds = 72 trials, each trained to the thesis' stop (a mean
# step loss of 0.02, or 50 epochs: such runs are marked), neural collapse every epoch, and where
# training stops the baselines and 𝒱-information at every layer l = 0..3 under two families that
# cannot memorise a split: `linear` (the certified affine optimum, which at l = 3 is also the
# thesis' own decoder there, f₋'s head on h³ flattened) and `mlp` (one hidden ReLU layer,
# started at that optimum), with held-out sufficiency. Three seeds give τ and ψ intervals over
# seeds; the robust sign-error needs more (an environment's 3 × 3 seed pairs bound its
# effective sample size at 9, below Dziugaite et al.'s 12). Sized for a 2-core CPU: one core a
# trial.
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": "mnistnet",
    "download": False,
    "lr": tune.grid_search([2e-3, 4e-3, 8e-3]),
    "batch_size": tune.grid_search([200, 400]),
    "widths": tune.grid_search([[8, 16, 32], [16, 32, 64]]),
    "train_size": tune.grid_search([2_500, 5_000]),
    "seed": tune.grid_search([0, 1, 2]),
    "baselines": True,  # the measures every NC and 𝒱-information measure is ranked against
    "vinfo_schedule": "stop",
    "vinfo_protocol": protocol.CONVERGED,
    "decoder_family": ["linear", "mlp"],
    "held_out": True,
}
RESOURCES = {
    "trial_cpu": 0.5, "trial_gpu": 0, "decoder_cpu": 0.5, "decoder_gpu": 0, "decoder_bundles": 1,
}  # fmt: skip
