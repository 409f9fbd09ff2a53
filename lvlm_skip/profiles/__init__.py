"""A model's layer profile: its critical and mutation layers, measured over many tokens.

* :mod:`~lvlm_skip.profiles.profile`: :class:`LayerProfile`, its statistics and the rule that picks
  ``c`` and ``M`` (torch-free: ``wrap(..., profile=path)`` reads it);
* :mod:`~lvlm_skip.profiles.measure`: :func:`~lvlm_skip.profiles.measure.profile`, which traces prompts;
* :mod:`~lvlm_skip.profiles.presets`: layers published for known models (the paper's LLaVA-1.5-7B);
* :mod:`~lvlm_skip.profiles.report`: the profile's Markdown table and figure.
"""

from .profile import LayerProfile, LayerStatistics, choose_layers

__all__ = ["LayerProfile", "LayerStatistics", "choose_layers"]
