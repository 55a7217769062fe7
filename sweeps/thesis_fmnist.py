"""The thesis on Fashion-MNIST (f₊ and f₋), sized for a 2-core CPU: docs/reproduction.md."""

from ray import tune

from raycompress import protocol

# Both networks' 𝒱-information at the log-spaced epochs 1 and 7 and where training stops (with
# layer 0 once), every decoder trained to the thesis' minimality budget of 50 epochs and scored
# along the way at 5, 10, 20 (the thesis' sufficiency budget) and 50 epochs. f₊ trains and
# decodes in bf16 (autocast, float32 weights): in fp32 its measurements would not fit a 2-core
# CPU; docs/benchmarks.md says what bf16 does to its numbers.
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "train_size": 10_000,
    "download": False,
    "vinfo_schedule": "log:3",
    "vinfo_protocol": protocol.THESIS,  # the thesis' recipe, as the thesis measured
    "decoder_epochs": 50,
    "precision": tune.sample_from(
        lambda config: "bf16" if config["model"] == "cifarnet" else "fp32"
    ),
}
# Two single-threaded decoder tasks per trial: the two trials share the two cores while both
# run, and f₊, the longer, has both to itself once f₋ has stopped.
RESOURCES = {
    "trial_cpu": 0.5, "trial_gpu": 0, "decoder_cpu": 0.25, "decoder_gpu": 0, "decoder_bundles": 2,
}  # fmt: skip
