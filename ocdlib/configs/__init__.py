"""Typed run configurations and their named presets.

A `Config` is a frozen dataclass tree (`schema.py`): printable, hashable, saved next to
every checkpoint as JSON. Presets are plain functions (`presets.py`); `--set a.b=value`
overrides any leaf; `validate` checks every field's range (`validation.py`). The short
hash of the resolved config keys the run cache.
"""

from . import presets, schema, validation
from .presets import *  # noqa: F403
from .schema import *  # noqa: F403
from .schema import _hash_dict as _hash_dict
from .validation import *  # noqa: F403

__all__ = [*presets.__all__, *schema.__all__, *validation.__all__]
