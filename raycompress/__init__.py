"""raycompress: does a network compress its representations, layer by layer, while it trains?

Modules, one concern each: `models` (the thesis' networks as layer lists), `data` (datasets as
tensors), `metrics` (neural-collapse statistics, pure functions and streaming accumulators),
`training` (the thesis' training protocol).
"""

__version__ = "0.1.0"
