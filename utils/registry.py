"""Name -> constructor registries, the single level of indirection behind `make(spec)`."""
import copy
from typing import Any, Callable, Dict, Optional


class Registry:
    """Maps official kebab-case names to classes or factories.

    Args:
        kind: what the registry holds ('model', 'dataset'), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        """Decorator adding a class or factory under `name`; a duplicate name raises."""
        def decorator(obj: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj
        return decorator

    def names(self):
        return sorted(self._entries)

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")
        return self._entries[name]

    def make(self, spec: Dict[str, Any], args: Optional[Dict[str, Any]] = None) -> Any:
        """Builds `spec['name']` with `spec['args']` updated by `args`.

        The spec is never mutated: its args are deep-copied before merging.
        """
        if not isinstance(spec, dict) or 'name' not in spec:
            raise ValueError(f"a {self.kind} spec must be a mapping with a 'name' key, got {spec!r}")
        constructor = self.get(spec['name'])
        kwargs = copy.deepcopy(spec.get('args') or {})
        if args is not None:
            kwargs.update(args)
        try:
            return constructor(**kwargs)
        except TypeError as e:
            if 'argument' not in str(e):
                raise
            raise ValueError(f"bad args for {self.kind} '{spec['name']}': {e}") from e
