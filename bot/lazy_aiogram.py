"""Import aiogram with its Bot API models built when first used, not at import.

aiogram's types and methods are ~450 pydantic models. Importing them builds a
validator and a serializer for every one, each with the schemas of the types it
nests copied in: about 110 MB of memory and 3 s of start-up, for the few dozen
types a bot ever meets. Here the models are created with `defer_build`, and the
namespace aiogram passes to `model_rebuild` (the names its type hints refer to) is
kept on each model, so pydantic builds a model completely on its first use. What
a model validates is unchanged: only when it is built.

Anything unexpected (another pydantic, an aiogram that already got imported) leaves
the import as it is.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def import_aiogram() -> bool:
    """Import aiogram with deferred models; False if it was imported as usual."""
    if "aiogram" in sys.modules:
        return False
    try:
        from pydantic import BaseModel
        from pydantic._internal import _config
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    defaults: dict[str, Any] = getattr(_config, "config_defaults", {})
    if "defer_build" not in defaults:
        return False
    rebuild = BaseModel.__dict__["model_rebuild"]
    names: dict[str, Any] = {}

    def keep_namespace(
        cls: type[BaseModel], *args: Any, _types_namespace: Any = None, **kwargs: Any
    ) -> Any:
        if _types_namespace is None or args or kwargs:
            return rebuild.__func__(cls, *args, _types_namespace=_types_namespace, **kwargs)
        # aiogram's call at import: the names are kept for the build on first use.
        names.update(_types_namespace)
        _keep(cls, _types_namespace)
        return None

    defaults["defer_build"] = True
    BaseModel.model_rebuild = classmethod(keep_namespace)  # type: ignore[method-assign,assignment,arg-type]
    try:
        import aiogram.methods
        import aiogram.types
    finally:
        defaults["defer_build"] = False
        BaseModel.model_rebuild = rebuild  # type: ignore[method-assign]
    if not names:
        # This aiogram passed no names to keep: build its models now, as it would.
        log.warning("aiogram's models could not be deferred; building them at import")
        for module in (aiogram.types, aiogram.methods):
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, BaseModel):
                    value.model_rebuild(raise_errors=False)
        return False
    # The methods name the types too (some only for type checkers).
    for value in vars(aiogram.methods).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            _keep(value, names)
    return True


def _keep(cls: type[Any], names: dict[str, Any]) -> None:
    own = cls.__dict__.get("__pydantic_parent_namespace__") or {}
    cls.__pydantic_parent_namespace__ = {**names, **own}
