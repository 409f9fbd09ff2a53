"""lvlm_skip: layer-wise knowledge evolution in vision-language models, and online layer skipping."""

from .anatomy import ModelAnatomy, UnsupportedModelError
from .detection import DetectionConfig, LayerDetection, detect_layers
from .divergence import js_divergence
from .trace import Trace, trace

__all__ = [
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
