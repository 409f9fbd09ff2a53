"""Entry modules for a checkout: ``python -m eval.X ...`` is ``lvlm-skip X ...``.

Nothing here is installed: the implementation lives in :mod:`lvlm_skip.evaluation` and
:mod:`lvlm_skip.scenes`, and each module of this folder re-exports its benchmark's public
functions and forwards its command line to :func:`lvlm_skip.cli.main`.
"""
