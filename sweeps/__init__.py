"""The sweep catalogue: one module per sweep, each with a docstring (its description), a
PARAM_SPACE (trial settings → values or Ray Tune search spaces; axes combine as a grid) and
optionally RESOURCES (see `raycompress.definition.Resources`). Installed as `raycompress.sweeps`.
`python -m raycompress.sweep --list` shows them; a path to a file of the same form runs your
own."""
