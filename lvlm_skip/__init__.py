"""lvlm_skip: layer-wise knowledge evolution in vision-language models, and online layer skipping."""

from .anatomy import ModelAnatomy, UnsupportedModelError
from .detection import DetectionConfig, LayerDetection, detect_layers
from .divergence import js_divergence
from .skipping import MODES, VARIANTS, SkipConfig, SkipReport
from .trace import Trace, trace
from .wrapping import is_wrapped, last_report, unwrap, wrap

__all__ = [
    "MODES",
    "SkipConfig",
    "SkipReport",
    "VARIANTS",
    "is_wrapped",
    "last_report",
    "unwrap",
    "wrap",
    "DetectionConfig",
    "LayerDetection",
    "ModelAnatomy",
    "Trace",
    "UnsupportedModelError",
    "detect_layers",
    "js_divergence",
    "trace",
]
__version__ = "0.1.0"
