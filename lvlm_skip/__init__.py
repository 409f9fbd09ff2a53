"""lvlm_skip: layer-wise knowledge evolution in vision-language models, and online layer skipping.

The public names below load their module on first use, so ``import lvlm_skip`` (and the
``lvlm-skip --help`` console script) does not pay for torch and transformers until they are needed.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "ModelAnatomy": "anatomy",
    "UnsupportedModelError": "anatomy",
    "DetectionConfig": "config",
    "LayerDetection": "detection",
    "detect_layers": "detection",
    "js_divergence": "divergence",
    "ModelLoadError": "inputs.models",
    "load_model": "inputs.models",
    "MODES": "config",
    "VARIANTS": "variants",
    "PEERS": "variants",
    "SkipConfig": "config",
    "SkipReport": "skips",
    "skipping": "wrapping",
    "Trace": "tracing",
    "trace": "tracing",
    "trace_readouts": "tracing",
    "is_wrapped": "wrapping",
    "last_report": "wrapping",
    "unwrap": "wrapping",
    "wrap": "wrapping",
    "MutationExitLogitsProcessor": "processors",
    "LayerProfile": "profiles",
    "profile": "profiles.measure",
    "PRESETS": "profiles.presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lvlm_skip' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
