"""The decoding-time peers, DoLa, DeCo and VCD, run by :func:`lvlm_skip.wrap` beside the paper's skips.

One module per method holds its per-step math on plain tensors, with its definition, defaults and
sources (:mod:`lvlm_skip.peers.dola`, :mod:`lvlm_skip.peers.deco`, :mod:`lvlm_skip.peers.vcd`);
:mod:`lvlm_skip.peers.controller` installs one of them on a model. Their options are the torch-free
:class:`~lvlm_skip.config.DolaConfig`, :class:`~lvlm_skip.config.DecoConfig` and
:class:`~lvlm_skip.config.VcdConfig`.

The three math modules share these conventions. Each function is torch only: it takes the next-token
logits of one decoding step (the last position) and returns the logits to decode from;
:mod:`lvlm_skip.peers.controller` wires them into ``generate``. Everything is computed in float32
whatever the input dtype; returned logits are float32, layer indices int64. No input is modified. Layer
``j`` is the output ``h_j`` of ``decoder.layers[j - 1]``, ``j = 0`` the embeddings (transformers'
``output_hidden_states[j]``, and the released codes' numbers). The defaults are in :mod:`lvlm_skip.config`;
``tests/test_peer_parity.py`` holds the released code's outputs on fixed inputs.
"""

from ..config import DecoConfig, DolaConfig, VcdConfig
from ..variants import PEERS
from .controller import PeerController, PeerReport, noised_images, peer_config

__all__ = ["DecoConfig", "DolaConfig", "PEERS", "PeerController", "PeerReport", "VcdConfig", "noised_images", "peer_config"]
