"""Strict schemas for configs and checkpoint specs: every section lists the keys it accepts,
their types and ranges; anything else is one error naming the key path, what was given and
what is allowed. `{name, args}` specs are checked against the registered constructor's
signature (its parameter names and type annotations)."""
import inspect
import math
import re
import typing
from typing import Any, Dict, Iterable, Optional, Sequence

from .registry import Registry


class ConfigError(ValueError):
    """A config value that does not fit its schema (one line)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return (text[:60] + '...') if len(text) > 60 else text


class Field:
    """A value's schema; `nullable` lets it be null (YAML `~` or empty)."""
    nullable = False

    def __init__(self, nullable: bool = False):
        self.nullable = nullable

    def check(self, value: Any, path: str) -> None:
        if value is None:
            if not self.nullable:
                raise ConfigError(f"{path}: expected {self.allowed()}, got null")
            return
        self.check_value(value, path)

    def allowed(self) -> str:
        return 'a value'

    def check_value(self, value: Any, path: str) -> None:
        pass

    def fail(self, value: Any, path: str) -> None:
        raise ConfigError(f"{path}: expected {self.allowed()}, got {_shown(value)}")


class Anything(Field):
    def __init__(self):
        super().__init__(nullable=True)


class Num(Field):
    """A finite number (an integer with integer=True) in [low, high]; `above`: strictly."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None,
                 above: bool = False, integer: bool = False, nullable: bool = False):
        super().__init__(nullable)
        self.low, self.high, self.above, self.integer = low, high, above, integer

    def allowed(self) -> str:
        kind = 'an integer' if self.integer else 'a number'
        if self.low is not None and self.high is not None and self.low == self.high:
            return f'{kind} equal to {self.low}'
        parts = [f"{'>' if self.above else '>='} {self.low}"] if self.low is not None else []
        parts += [f'<= {self.high}'] if self.high is not None else []
        return ' '.join([kind] + (['(' + ', '.join(parts) + ')'] if parts else []))

    def check_value(self, value: Any, path: str) -> None:
        types = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
            self.fail(value, path)
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            self.fail(value, path)
        if self.high is not None and value > self.high:
            self.fail(value, path)


def Int(low: Optional[int] = None, high: Optional[int] = None, nullable: bool = False) -> Num:
    return Num(low, high, integer=True, nullable=nullable)


class Bool(Field):
    def allowed(self) -> str:
        return 'true or false'

    def check_value(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            self.fail(value, path)


class Str(Field):
    """A string, one of `choices` or matching `pattern` (described by `what`) if given."""

    def __init__(self, choices: Optional[Sequence[str]] = None, pattern: Optional[str] = None,
                 what: Optional[str] = None, nullable: bool = False):
        super().__init__(nullable)
        self.choices, self.pattern, self.what = choices, pattern, what

    def allowed(self) -> str:
        if self.choices:
            return 'one of ' + ', '.join(repr(c) for c in self.choices)
        return self.what or 'a string'

    def check_value(self, value: Any, path: str) -> None:
        if not isinstance(value, str) or (self.choices and value not in self.choices) or \
                (self.pattern and not re.fullmatch(self.pattern, value)):
            self.fail(value, path)


class ListOf(Field):
    def __init__(self, item: Field, nullable: bool = False):
        super().__init__(nullable)
        self.item = item

    def allowed(self) -> str:
        return f'a list of {self.item.allowed()}'

    def check_value(self, value: Any, path: str) -> None:
        if not isinstance(value, (list, tuple)):
            self.fail(value, path)
        for i, v in enumerate(value):
            self.item.check(v, f'{path}[{i}]')


class Either(Field):
    """A value that fits one of several fields."""

    def __init__(self, *fields: Field, nullable: bool = False):
        super().__init__(nullable)
        self.fields = fields

    def allowed(self) -> str:
        return ' or '.join(f.allowed() for f in self.fields)

    def check_value(self, value: Any, path: str) -> None:
        for f in self.fields:
            try:
                f.check(value, path)
                return
            except ConfigError:
                pass
        self.fail(value, path)


class Section(Field):
    """A mapping with the given fields; `required` keys must be present."""

    def __init__(self, fields: Dict[str, Field], required: Iterable[str] = (),
                 nullable: bool = False):
        super().__init__(nullable)
        self.fields, self.required = fields, tuple(required)

    def allowed(self) -> str:
        return 'a mapping'

    def check_value(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(value, path)
        prefix = f'{path}.' if path else ''
        for key in value:
            if key not in self.fields:
                raise ConfigError(f"{prefix}{key}: unknown key; allowed here: "
                                  f"{', '.join(sorted(self.fields))}")
        for key in self.required:
            if key not in value:
                raise ConfigError(f"{prefix}{key}: missing (required)")
        for key, v in value.items():
            self.fields[key].check(v, f'{prefix}{key}')


class Spec(Field):
    """An official `{name, args}` spec of `registry`: `args` are checked against the
    constructor's parameters; `extra` keys (e.g. a checkpoint's 'sd') are allowed beside them;
    `injected` parameters are given by the code, not the config (e.g. a wrapper's dataset)."""

    def __init__(self, registry: Registry, extra: Optional[Dict[str, Field]] = None,
                 injected: Sequence[str] = ('dataset',),
                 ranges: Optional[Dict[str, Field]] = None, nullable: bool = False):
        super().__init__(nullable)
        self.registry, self.extra, self.injected = registry, extra or {}, injected
        self.ranges = ranges or {}

    def allowed(self) -> str:
        return f'a {self.registry.kind} spec {{name, args}}'

    def check_value(self, value: Any, path: str) -> None:
        Section({'name': Str(), 'args': Anything(), **self.extra}, ['name']).check(value, path)
        if value['name'] not in self.registry.names():
            raise ConfigError(f"{path}.name: unknown {self.registry.kind} {value['name']!r}; "
                              f"known: {', '.join(self.registry.names())}")
        args = value.get('args') or {}
        if not isinstance(args, dict):
            raise ConfigError(f"{path}.args: expected a mapping, got {_shown(args)}")
        constructor = self.registry.get(value['name'])
        params = inspect.signature(constructor).parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return
        # A constructor's own ranges (an `arg_ranges` attribute) before the shared ones.
        own = getattr(constructor, 'arg_ranges', {})
        fields = {name: own.get(name) or self.ranges.get(name) or self.field_of(name, p)
                  for name, p in params.items() if name not in self.injected}
        Section(fields).check(args, f'{path}.args')

    def field_of(self, name: str, param: inspect.Parameter) -> Field:
        """The Field of a constructor parameter from its annotation and default."""
        annotation, nullable = param.annotation, param.default is None
        if typing.get_origin(annotation) is typing.Union:
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(members) < len(typing.get_args(annotation))
            annotation = members[0] if len(members) == 1 else Any
        origin = typing.get_origin(annotation)
        if annotation is bool:
            return Bool(nullable)
        if annotation is int:
            return Int(0, nullable=nullable)
        if annotation is float:
            return Num(nullable=nullable)
        if annotation is str:
            return Str(nullable=nullable)
        if name.endswith('_spec'):
            return Spec(self.registry, injected=(), ranges=self.ranges, nullable=True)
        if origin in (list, tuple, Sequence, typing.Sequence) or \
                getattr(origin, '__name__', '') == 'Sequence':
            args = typing.get_args(annotation)
            item = Int(0) if args and args[0] is int else Anything()
            return ListOf(item, nullable)
        return Anything()


def check_config(config: Dict[str, Any], schema: Field, source: str,
                 overridden: Iterable[str] = ()) -> None:
    """Raises ConfigError '<source>: <key path>: <problem>' for the first value that does not
    fit `schema`; a key set by --set says so."""
    try:
        schema.check(config, '')
    except ConfigError as e:
        message = str(e)
        key = message.split(':', 1)[0].split('[', 1)[0]
        if any(key == k or key.startswith(k + '.') for k in overridden):
            message += ' (set by --set)'
        raise ConfigError(f"{source}: {message}") from None
