"""Models that torch and torchao keep alive after quantizing them, and letting them go.

``torch.ao.quantization.fx.utils.assert_and_get_unique_device`` (called by ``prepare_fx``, ``convert_fx`` and the
Numeric Suite) and ``torchao.utils._assert_and_get_unique_device`` (``prepare_pt2e``, ``convert_pt2e``) are ``functools.cache``\\ d on
the model: every model they see stays in memory until the process ends, with all its weights. A build that makes a
dozen int8 models (the fix's rungs) would hold a dozen copies.
"""

from __future__ import annotations

import sys

# (module, function) of each cached device lookup; a missing one (another torch or torchao) is skipped.
CACHED_LOOKUPS = (("torch.ao.quantization.fx.utils", "assert_and_get_unique_device"),
                  ("torchao.utils", "_assert_and_get_unique_device"))


def release_cached_models() -> None:
    """Empty the device lookups' caches (of the modules imported so far), so the models they hold can be freed."""
    for module_name, function in CACHED_LOOKUPS:
        module = sys.modules.get(module_name)
        cache_clear = getattr(getattr(module, function, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()
