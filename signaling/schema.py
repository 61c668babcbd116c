"""Payload schemas as plain dataclasses, and the small validator that checks them.

Why not a library: the protocol needs objects, strings with length limits and patterns, bools,
bounded ints, enumerations, lists of strings and string->int maps — about a hundred lines here,
fast on the message hot path, with errors that name the exact field (``to.agent``,
``context.page_url``) the way docs/protocol.md promises.

A schema is a dataclass; each field's constraint is in ``field(metadata={"c": Rule(...)})`` via the
helpers below. ``validate(Schema, payload, limits)`` returns an instance or raises
``ProtocolError("invalid", ..., field)``. Unknown fields are refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import invalid

MESSAGE = -1  # a max length that means "limits.max_message_chars"

ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
EVENT_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LOCALE_RE = re.compile(r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$")  # a BCP 47 language tag ("" for none)


@dataclass(frozen=True)
class Rule:
    min_len: int = 0
    max_len: int | None = None
    pattern: re.Pattern[str] | None = None
    pattern_text: str = ""
    lo: int | None = None
    hi: int | None = None
    item: "Rule | None" = None  # list items / dict values
    attributes: bool = False  # a dict of custom attributes (``attributes()``), not channel counts


def chars(max_len: int = 256, min_len: int = 0, pattern: re.Pattern[str] | None = None,
         describe: str = "", **kw: Any) -> Any:
    return field(metadata={"c": Rule(min_len=min_len, max_len=max_len, pattern=pattern, pattern_text=describe)}, **kw)


def ident(describe: str = "an id", **kw: Any) -> Any:
    return chars(max_len=128, min_len=1, pattern=ID_RE,
                 describe=f"{describe} (letters, digits and _ . : - only)", **kw)


def event_id(**kw: Any) -> Any:
    return chars(max_len=41, min_len=1, pattern=EVENT_ID_RE, describe='a stream id like "1732345678901-0"', **kw)


def number(lo: int, hi: int, **kw: Any) -> Any:
    return field(metadata={"c": Rule(lo=lo, hi=hi)}, **kw)


def strings(max_items: int = 32, max_len: int = 64, pattern: re.Pattern[str] | None = None,
            describe: str = "", **kw: Any) -> Any:
    return field(metadata={"c": Rule(max_len=max_items, item=Rule(max_len=max_len, min_len=1, pattern=pattern,
                                                                   pattern_text=describe))}, **kw)


def counts(max_items: int = 16, hi: int = 1000, **kw: Any) -> Any:
    return field(metadata={"c": Rule(max_len=max_items, item=Rule(lo=0, hi=hi))}, **kw)


# --- custom attributes (a customer's context: plan, order_id...) -----------------------------------

ATTRIBUTE_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_CHARS = 1000
# numbers beyond this lose precision in JavaScript (the SDK and the console read them)
MAX_ATTRIBUTE_NUMBER = 2**53

AttributeValue = str | int | float | bool | None


def attributes(**kw: Any) -> Any:
    """A map of custom attributes: keys like ``plan`` or ``order_id``, values text, numbers,
    booleans or null (null deletes the key). See :func:`check_attributes`."""
    return field(metadata={"c": Rule(max_len=MAX_ATTRIBUTES, attributes=True)}, **kw)


def check_attributes(value: Any, where: str = "attributes", max_keys: int = MAX_ATTRIBUTES) -> dict[str, AttributeValue]:
    """Check a custom attribute map; errors name the key (``attributes.plan``)."""
    if not isinstance(value, dict):
        raise invalid(where, f"must be an object like {{\"plan\": \"pro\"}}, got {_describe(value)}")
    if len(value) > max_keys:
        raise invalid(where, f"must have at most {max_keys} keys, got {len(value)}")
    out: dict[str, AttributeValue] = {}
    for key, v in value.items():
        name = f"{where}.{key}"[:120]
        if not isinstance(key, str) or not ATTRIBUTE_KEY_RE.match(key):
            raise invalid(name, "keys must start with a letter and have only letters, digits and _ . - "
                                "(up to 64 characters)")
        if v is None or isinstance(v, bool):
            out[key] = v
        elif isinstance(v, str):
            if not v.isascii() and not encodable(v):
                raise invalid(name, "must be Unicode text (it holds a lone UTF-16 surrogate)")
            if len(v) > MAX_ATTRIBUTE_CHARS:
                raise invalid(name, f"must be at most {MAX_ATTRIBUTE_CHARS} characters, got {len(v)}")
            out[key] = v
        elif isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise invalid(name, "must be a finite number")
            if abs(v) > MAX_ATTRIBUTE_NUMBER:
                raise invalid(name, f"must be a number between -{MAX_ATTRIBUTE_NUMBER} and {MAX_ATTRIBUTE_NUMBER}")
            out[key] = v
        else:
            raise invalid(name, f"must be text, a number, true/false or null (to delete it), got {_describe(v)}")
    return out


def encodable(text: str) -> bool:
    """Whether ``text`` can be stored and sent (UTF-8): JSON's ``\\ud800`` escapes decode to lone
    surrogates, which Redis' encoder and every socket refuse."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Missing:
    pass


_MISSING = _Missing()


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # str int bool obj list dict literal
    optional: bool
    required: bool
    rule: Rule
    choices: tuple[Any, ...] = ()
    schema: type | None = None
    default: Any = None
    attr: str = ""  # the dataclass attribute, when the wire name differs


_SPECS: dict[type, tuple[_Field, ...]] = {}


def _spec(cls: type) -> tuple[_Field, ...]:
    spec = _SPECS.get(cls)
    if spec is not None:
        return spec
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = False
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            (hint,) = args
            origin = typing.get_origin(hint)
        rule = f.metadata.get("c", Rule())
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory)
        choices: tuple[Any, ...] = ()
        schema = None
        if origin is Literal:
            kind, choices = "literal", typing.get_args(hint)
        elif origin is list:
            kind = "list"
            item_hint = (typing.get_args(hint) or (str,))[0]
            if typing.get_origin(item_hint) is Literal:  # list[Literal[...]]: each item one of these
                choices = typing.get_args(item_hint)
        elif origin is dict:
            kind = "dict"
        elif dataclasses.is_dataclass(hint):
            kind, schema = "obj", hint
        elif hint is str:
            kind = "str"
        elif hint is bool:
            kind = "bool"
        elif hint is int:
            kind = "int"
        elif hint is object:
            kind = "any"  # checked by the caller
        else:  # pragma: no cover - a schema author's mistake
            raise TypeError(f"unsupported schema type {hint!r} on {cls.__name__}.{f.name}")
        # metadata "name": the field's name on the wire when it is a Python keyword (``as``)
        out.append(_Field(f.metadata.get("name", f.name), kind, optional, required, rule, choices, schema, default,
                          attr=f.name))
    spec = tuple(out)
    _SPECS[cls] = spec
    return spec


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _check_str(value: Any, rule: Rule, where: str, max_message: int) -> str:
    if not isinstance(value, str):
        raise invalid(where, f"must be text, got {_describe(value)}")
    if not value.isascii() and not encodable(value):
        raise invalid(where, "must be Unicode text (it holds a lone UTF-16 surrogate, \\ud800-\\udfff)")
    limit = max_message if rule.max_len == MESSAGE else rule.max_len
    if limit is not None and len(value) > limit:
        raise invalid(where, f"must be at most {limit} characters, got {len(value)}")
    if len(value) < rule.min_len:
        raise invalid(where, "must not be empty" if rule.min_len == 1 else f"must be at least {rule.min_len} characters")
    if rule.pattern is not None and not rule.pattern.match(value):
        raise invalid(where, f"must be {rule.pattern_text or 'of the form ' + rule.pattern.pattern}")
    return value


def _check_int(value: Any, rule: Rule, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid(where, f"must be a whole number, got {_describe(value)}")
    if (rule.lo is not None and value < rule.lo) or (rule.hi is not None and value > rule.hi):
        raise invalid(where, f"must be between {rule.lo} and {rule.hi}, got {value}")
    return value


def validate(cls: type, payload: Any, max_message: int = 4000, where: str = "") -> Any:
    """Check ``payload`` against the dataclass ``cls``; return an instance or raise ``invalid``."""
    if payload is None and not where:
        payload = {}
    if not isinstance(payload, dict):
        raise invalid(where or "payload", f"must be an object, got {_describe(payload)}")
    spec = _spec(cls)
    known = {f.name for f in spec}
    for key in payload:
        if key not in known:
            name = f"{where}.{key}" if where else str(key)
            raise invalid(name, f"unknown field (expected: {', '.join(sorted(known)) or 'none'})")
    kwargs: dict[str, Any] = {}
    for f in spec:
        name = f"{where}.{f.name}" if where else f.name
        value = payload.get(f.name, _MISSING)
        if value is _MISSING or (value is None and f.optional):
            if f.required:
                raise invalid(name, "is required")
            continue
        rule = f.rule
        if f.kind == "str":
            kwargs[f.name] = _check_str(value, rule, name, max_message)
        elif f.kind == "bool":
            if not isinstance(value, bool):
                raise invalid(name, f"must be true or false, got {_describe(value)}")
            kwargs[f.name] = value
        elif f.kind == "int":
            kwargs[f.name] = _check_int(value, rule, name)
        elif f.kind == "literal":
            if value not in f.choices or isinstance(value, bool):
                raise invalid(name, f"must be one of {', '.join(map(str, f.choices))}, got {value!r}"[:300])
            kwargs[f.name] = value
        elif f.kind == "any":
            kwargs[f.name] = value
        elif f.kind == "obj":
            assert f.schema is not None
            kwargs[f.name] = validate(f.schema, value, max_message, name)
        elif f.kind == "list":
            if not isinstance(value, list):
                raise invalid(name, f"must be a list, got {_describe(value)}")
            if rule.max_len is not None and len(value) > rule.max_len:
                raise invalid(name, f"must have at most {rule.max_len} items")
            item = rule.item or Rule()
            kwargs[f.name] = [_check_str(v, item, f"{name}[{i}]", max_message) for i, v in enumerate(value)]
            for i, v in enumerate(kwargs[f.name] if f.choices else ()):
                if v not in f.choices:
                    raise invalid(f"{name}[{i}]", f"must be one of {', '.join(map(str, f.choices))}, got {v!r}"[:300])
        elif f.kind == "dict":
            if rule.attributes:
                kwargs[f.name] = check_attributes(value, name, rule.max_len or MAX_ATTRIBUTES)
                continue
            if not isinstance(value, dict):
                raise invalid(name, f"must be an object, got {_describe(value)}")
            if rule.max_len is not None and len(value) > rule.max_len:
                raise invalid(name, f"must have at most {rule.max_len} entries")
            item = rule.item or Rule()
            checked = {}
            for k, v in value.items():
                if not CHANNEL_RE.match(k):
                    raise invalid(f"{name}.{k}"[:200], "keys must be channel names like chat or voice")
                checked[k] = _check_int(v, item, f"{name}.{k}")
            kwargs[f.name] = checked
    return cls(**{f.attr or f.name: kwargs[f.name] for f in spec if f.name in kwargs})


def to_plain(obj: Any) -> Any:
    """A validated instance back to plain data, without the fields left unset (None)."""
    if dataclasses.is_dataclass(obj):
        return {k: to_plain(v) for k, v in ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
                if v is not None}
    return obj


# --- JSON Schema (the REST API's OpenAPI document is generated from these same dataclasses) -------

def json_schema(cls: type, max_message: int = 4000, refs: dict[str, Any] | None = None,
                ref_prefix: str = "#/components/schemas/") -> dict[str, Any]:
    """The JSON Schema (2020-12, as OpenAPI 3.1 uses) of what :func:`validate` accepts for ``cls``.

    Nested schemas go into ``refs`` (name -> schema) and are referenced, when ``refs`` is given.
    Optional fields accept ``null`` (the validator treats it as absent); unknown fields are refused."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in _spec(cls):
        props[f.name] = _field_schema(f, max_message, refs, ref_prefix)
        if f.required:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(cls.__name__ + "("):  # not the dataclass's generated signature
        out["description"] = " ".join(doc.split())
    return out


def _str_schema(rule: Rule, max_message: int) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    limit = max_message if rule.max_len == MESSAGE else rule.max_len
    if limit is not None:
        s["maxLength"] = limit
    if rule.min_len:
        s["minLength"] = rule.min_len
    if rule.pattern is not None:
        s["pattern"] = rule.pattern.pattern
    if rule.pattern_text:
        s["description"] = rule.pattern_text
    return s


def _field_schema(f: _Field, max_message: int, refs: dict[str, Any] | None, ref_prefix: str) -> dict[str, Any]:
    rule = f.rule
    s: dict[str, Any]
    if f.kind == "str":
        s = _str_schema(rule, max_message)
    elif f.kind == "int":
        s = {"type": "integer"}
        if rule.lo is not None:
            s["minimum"] = rule.lo
        if rule.hi is not None:
            s["maximum"] = rule.hi
    elif f.kind == "bool":
        s = {"type": "boolean"}
    elif f.kind == "literal":
        s = {"enum": list(f.choices)}
    elif f.kind == "obj":
        assert f.schema is not None
        inner = json_schema(f.schema, max_message, refs, ref_prefix)
        if refs is None:
            s = inner
        else:
            refs.setdefault(f.schema.__name__, inner)
            s = {"$ref": ref_prefix + f.schema.__name__}
    elif f.kind == "list":
        item = _str_schema(rule.item or Rule(), max_message)
        if f.choices:
            item = {"enum": list(f.choices)}
        s = {"type": "array", "items": item}
        if rule.max_len is not None:
            s["maxItems"] = rule.max_len
    elif f.kind == "dict" and rule.attributes:
        s = {"type": "object", "maxProperties": rule.max_len or MAX_ATTRIBUTES,
             "propertyNames": {"pattern": ATTRIBUTE_KEY_RE.pattern},
             "additionalProperties": {"anyOf": [
                 {"type": "string", "maxLength": MAX_ATTRIBUTE_CHARS},
                 {"type": "number", "minimum": -MAX_ATTRIBUTE_NUMBER, "maximum": MAX_ATTRIBUTE_NUMBER},
                 {"type": "boolean"}, {"type": "null"}]},
             "description": "custom attributes: text, numbers or booleans; null deletes a key"}
    elif f.kind == "dict":
        item = rule.item or Rule()
        value: dict[str, Any] = {"type": "integer"}
        if item.lo is not None:
            value["minimum"] = item.lo
        if item.hi is not None:
            value["maximum"] = item.hi
        s = {"type": "object", "propertyNames": {"pattern": CHANNEL_RE.pattern}, "additionalProperties": value}
        if rule.max_len is not None:
            s["maxProperties"] = rule.max_len
    else:  # "any": checked by the handler
        s = {}
    if f.optional and s:
        s = {"anyOf": [s, {"type": "null"}]} if "$ref" in s or "enum" in s else {**s, "type": [s["type"], "null"]}
    return s
