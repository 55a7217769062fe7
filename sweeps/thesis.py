"""The thesis' four scenarios: CIFAR-10 and Fashion-MNIST × f₊ and f₋, its full protocol."""

from ray import tune

from raycompress import protocol
from raycompress.sweeps import GPU_SHARES

# The thesis' 𝒱 (the network above each layer) under its own fixed decoder recipe, to
# reproduce its figures; the converged protocol reads the same family certified.
PARAM_SPACE = {
    "dataset": tune.grid_search(["cifar10", "fashion-mnist"]),
    "model": tune.grid_search(["cifarnet", "mnistnet"]),
    "vinfo_protocol": protocol.THESIS,
}
RESOURCES = GPU_SHARES
