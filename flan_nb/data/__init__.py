"""Stage 1, the finetuning data (paper section 2.1, appendix E): task registry, loaders,
instruction templates, examples-proportional mixing, contamination checks, synthetic suite.

Entry points (imported lazily, see flan_nb.lazy): {name: module of this package}.
"""

from flan_nb.lazy import entry_points

__getattr__, __dir__, __all__ = entry_points(__name__, {
    "load_registry": "registry",
    "coverage": "registry",
    "load_task": "loaders",
    "load_template_set": "templates",
    "render": "templates",
    "MixingParams": "mixing",
    "build_mixture": "mixing",
    "load_preset": "mixing",
    "check": "contamination",
})
