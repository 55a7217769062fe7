"""The sweep catalogue: one module per sweep, each with a docstring (its description), a
PARAM_SPACE (trial settings → values or Ray Tune search spaces; axes combine as a grid) and
optionally RESOURCES (see `raycompress.definition.Resources`). Installed as `raycompress.sweeps`.
`python -m raycompress.sweep --list` shows them; a path to a file of the same form runs your
own."""

from types import MappingProxyType

# The RESOURCES of the sweeps sized for GPUs (thesis, imbalance, lr, seeds, architectures):
# a quarter of a GPU a trial, an eighth for its training and an eighth for its one decoder
# bundle (its 𝒱-information tasks run there one at a time), so that four trials share a GPU.
# Why four: Ray's GPU fractions are bookkeeping, so what must fit is memory, and one trial
# holds at most its dataset (Fashion-MNIST 0.2 GB, CIFAR-10 0.7 GB in float32), the neural
# collapse features it keeps (`nc_feature_budget_mib`, 1 GiB) and one decoder task's
# cached features (`VInfoConfig.cache_bytes`, 2 GiB; more stays in host memory): ≤ 4 GiB, so
# four ≤ 16 GiB, within a 24 GiB card and far within an 80 GiB one. And one of these small
# networks (batch 400 of 28×28 or 32×32 images) leaves most of a GPU idle between its
# kernels, where trials sharing it fill the gaps. The packing is shown with fake GPUs by
# tests/test_launch.py and on a real one by benchmarks/gpu_check.py. Without GPUs the shares
# become CPU bundles: 2 CPUs a trial, two trials at once on 4 cores.
GPU_SHARES = MappingProxyType(
    {"trial_cpu": 1, "trial_gpu": 0.125, "decoder_cpu": 1, "decoder_gpu": 0.125}
)
