"""thesis_fmnist with 𝒱-information under the converged protocol: every decoder trained until
certified (or 400 epochs), warm-started from the previous measurement's, f₊ (bf16) and f₋."""

from raycompress import protocol
from raycompress.sweeps import thesis_fmnist

# The same trials, measured at the same epochs (log:3 and the stopping epoch) on the same
# reservations; only the decoders change, so that every verdict of docs/reproduction.md can be
# judged on both.
PARAM_SPACE = {
    **thesis_fmnist.PARAM_SPACE,
    "vinfo_protocol": protocol.CONVERGED,
    "decoder_warm_start": True,
    "decoder_epochs": 400,
}
RESOURCES = thesis_fmnist.RESOURCES
