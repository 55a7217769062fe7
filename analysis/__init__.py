"""Analysis of a sweep's tidy results frame (`raycompress.results.load`): derived tables and
the thesis' figures for any sweep, faceted by its axes. Installed as `raycompress.analysis`.

    tables   final metrics per trial, generalisation and compression gaps, equi-separation
    figures  one function per thesis figure, each returning a `Figure` (the grid and its data)
"""
