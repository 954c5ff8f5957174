"""A small JSON Schema checker for the schemas in docs/ (no third-party
package): the keywords those files use and no others, so a schema that
starts to use one this does not know fails loudly instead of passing.

Keywords: type (one or a list), const, enum, properties, required, items,
pattern, minimum, anyOf, $ref (to "#/$defs/NAME", to another schema file
of docs/, or to that file's "#/$defs/NAME"), and the annotations $schema,
$id, title, description, $defs.
"""
import json
import os
import re

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "docs")
KNOWN = {"type", "const", "enum", "properties", "required", "items", "pattern", "minimum",
         "anyOf", "$ref", "$schema", "$id", "title", "description", "$defs"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
# Errors listed in a failure; the rest are counted.
SHOWN_ERRORS = 20


def load(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return json.load(f)


class Checker:
    def __init__(self, name):
        self.files = {}
        self.root = name

    def _file(self, name):
        if name not in self.files:
            self.files[name] = load(name)
        return self.files[name]

    def _resolve(self, ref, base):
        name, _, frag = ref.partition("#")
        name = name or base
        node = self._file(name)
        for part in filter(None, frag.split("/")):
            node = node[part]
        return node, name

    def check(self, value):
        errors = []
        self._check(value, self._file(self.root), self.root, "$", errors)
        return errors

    def _check(self, v, s, base, at, errors):
        unknown = set(s) - KNOWN
        if unknown:
            raise ValueError("schema keyword(s) %s at %s are not supported here" %
                             (sorted(unknown), at))
        if "$ref" in s:
            target, tbase = self._resolve(s["$ref"], base)
            self._check(v, target, tbase, at, errors)
        if "anyOf" in s:
            if not any(not self._sub(v, alt, base, at) for alt in s["anyOf"]):
                errors.append("%s: matches none of anyOf (%r)" % (at, _short(v)))
        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            if not any(TYPES[t](v) for t in types):
                errors.append("%s: %r is not %s" % (at, _short(v), " or ".join(types)))
                return
        if "const" in s and v != s["const"]:
            errors.append("%s: %r is not %r" % (at, _short(v), s["const"]))
        if "enum" in s and v not in s["enum"]:
            errors.append("%s: %r is not one of %s" % (at, _short(v), s["enum"]))
        if "pattern" in s and isinstance(v, str) and not re.search(s["pattern"], v):
            errors.append("%s: %r does not match %s" % (at, _short(v), s["pattern"]))
        if "minimum" in s and TYPES["number"](v) and v < s["minimum"]:
            errors.append("%s: %r is below %r" % (at, v, s["minimum"]))
        if isinstance(v, dict):
            for key in s.get("required", ()):
                if key not in v:
                    errors.append("%s: no %r" % (at, key))
            for key, sub in s.get("properties", {}).items():
                if key in v:
                    self._check(v[key], sub, base, "%s.%s" % (at, key), errors)
        if isinstance(v, list) and "items" in s:
            for i, item in enumerate(v):
                self._check(item, s["items"], base, "%s[%d]" % (at, i), errors)

    def _sub(self, v, s, base, at):
        errors = []
        self._check(v, s, base, at, errors)
        return errors


def _short(v):
    text = json.dumps(v)
    return text if len(text) < 80 else text[:77] + "..."


def assert_valid(doc, schema_name):
    errors = Checker(schema_name).check(doc)
    assert not errors, "%d schema errors against docs/%s:\n%s%s" % (
        len(errors), schema_name, "\n".join(errors[:SHOWN_ERRORS]),
        "\n..." if len(errors) > SHOWN_ERRORS else "")
