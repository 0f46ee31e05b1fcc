"""Settings: the config dataclass of every stage and the names its fields may take,
without the code that acts on them.

Each module here holds one stage's :func:`leanbits.config.option` dataclass (``[data]``,
``[train]``, ``[prune]``, ``[bits]``, ``[compress]``) and the vocabularies of its choices
(data sets, model presets, heads, pruning methods, quantizers, ...). They import nothing
heavy (no torch, numpy or safetensors), so that the command line can build its parsers and
validate flags and config files in a fraction of a second; the modules that implement a
stage import its config and names from here, so each is defined once.
"""
