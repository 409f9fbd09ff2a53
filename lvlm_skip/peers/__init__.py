"""The decoding-time peers, DoLa, DeCo and VCD, run by :func:`lvlm_skip.wrap` beside the paper's skips.

One module per method holds its per-step math on plain tensors, with its definition, defaults and
sources (:mod:`lvlm_skip.peers.dola`, :mod:`lvlm_skip.peers.deco`, :mod:`lvlm_skip.peers.vcd`);
:mod:`lvlm_skip.peers.controller` installs one of them on a model. Their options are the torch-free
:class:`~lvlm_skip.config.DolaConfig`, :class:`~lvlm_skip.config.DecoConfig` and
:class:`~lvlm_skip.config.VcdConfig`.
"""

from ..config import DecoConfig, DolaConfig, VcdConfig
from ..variants import PEERS
from .controller import PeerController, PeerReport, noised_images, peer_config

__all__ = ["DecoConfig", "DolaConfig", "PEERS", "PeerController", "PeerReport", "VcdConfig", "noised_images", "peer_config"]
