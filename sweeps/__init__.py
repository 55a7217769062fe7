"""The sweep catalogue: one module per sweep, each with a docstring (its description), a
PARAM_SPACE (trial settings → values or Ray Tune search spaces; axes combine as a grid) and
optionally RESOURCES (see `raycompress.definition.Resources`). Installed as `raycompress.sweeps`.
`python -m raycompress.sweep --list` shows them; a path to a file of the same form runs your
own."""

from types import MappingProxyType

# The RESOURCES of the sweeps sized for GPUs (thesis, imbalance, lr, seeds, architectures): a
# trial reserves half a GPU for training and a quarter for its one decoder bundle, in which its
# 𝒱-information tasks run one at a time: 0.75 GPU, so one trial per GPU. Without GPUs the shares
# become CPU bundles: 2 CPUs a trial, two trials at once on 4 cores.
GPU_SHARES = MappingProxyType(
    {"trial_cpu": 1, "trial_gpu": 0.5, "decoder_cpu": 1, "decoder_gpu": 0.25}
)
