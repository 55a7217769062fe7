"""raycompress: does a network compress its representations, layer by layer, while it trains?

The library, one concern per module (the mathematics in `metrics`, Ray and files at the edges):

    protocol    the thesis' training protocol as constants: every default's one source
    data        datasets as tensors from their files, class imbalance
    sampling    pure sampling over tensors: splits, stratified subsets, batch orders, relabelling
    models      networks as layer lists: encoders f^{l:1}, fresh decoders f^{L:l+1}
    torchvision_models  torchvision's ResNets and VGGs cut at their stages
    metrics     the measures: neural collapse (`nc`, `accumulate`, `collapse`),
                𝒱-information (`vinfo`, `decoders`, `affine`) and the literature's
                generalisation baselines (`baselines`), pure functions over tensors
    compute     how training arithmetic runs: bf16 autocast, channels_last, compilation
    stopping    when a training stops, for the main network and the decoders alike
    seeds       every random stream derived from a run's seed by name, hashed
    schema      what a run measured, as types: every name between measuring and recording
    training    the thesis' training protocol, one epoch at a time, measuring as it goes
    plan        which 𝒱-information measurements an epoch makes, and the in-process executor
    trial       a trial's flat settings (what sweeps sweep), validated and typed
    record      a run's record on disk: file names, the history and its Parquet rows, summary
                keys, description
    storage     where results live: a local folder or one in object storage under a URI
    trainable   the Ray Tune trainable; 𝒱-information as Ray tasks; checkpoints
    definition  a sweep definition: loading, validation, grids, resources
    launch      starting a sweep on Ray Tune (embedded or a cluster), storage, resume
    sweep       the sweep command line: `python -m raycompress.sweep NAME`
    run         one run in this process, without Ray: `python -m raycompress.run`
    results     the tidy pandas frame of a results folder, without Ray: selected while read,
                consolidated per experiment (`python -m raycompress.results consolidate`)
    report      the report command: every figure and table of a results folder
    analysis    figures and derived tables over the tidy frame (the top-level `analysis/`)
    sweeps      the sweep catalogue (the top-level `sweeps/`)
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("raycompress")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

# Installed, raycompress.sweeps and raycompress.analysis are the source tree's top-level sweeps/
# and analysis/ (pyproject's package-dir); imported straight from a source tree (a copy on
# PYTHONPATH, as on the GPU machine), they are found there too.
_tree = Path(__file__).resolve().parents[1]
if not Path(__file__).with_name("sweeps").is_dir() and (_tree / "sweeps" / "__init__.py").is_file():
    __path__.append(str(_tree))
