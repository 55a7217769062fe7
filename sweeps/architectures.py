"""The thesis' claims put to other networks: f₋, f₊, an MLP and ResNet-18 on Fashion-MNIST."""

from ray import tune

from raycompress.sweeps import GPU_SHARES

# The thesis' protocol (AdamW 2e-3, batch 400, until the training loss is 0.02 or 50 epochs),
# neural collapse after every layer or stage each epoch, 𝒱-information at five log-spaced epochs
# and where training stops. ResNet-18 is torchvision's, adapted to 28×28 grayscale inputs (a
# 3×3 stride-1 stem from one channel, no max-pool) and measured with its running statistics.
PARAM_SPACE = {
    "dataset": "fashion-mnist",
    "model": tune.grid_search(["mnistnet", "cifarnet", "mlp", "torchvision:resnet18"]),
    "vinfo_schedule": "log:5",
}
RESOURCES = GPU_SHARES
