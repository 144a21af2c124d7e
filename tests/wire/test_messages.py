"""Message types, the registry, and the settings hash."""

from twisted.trial import unittest

from clsd.wire.core.errors import FieldError
from clsd.wire.core.messages import (
    HELLO,
    PEER_TYPES,
    MessageType,
    Registry,
    peer_registry,
    settings_hash,
)
from clsd.wire.core.schema import MapOf, Optional


class RegistryTests(unittest.TestCase):
    def test_peer_registry_has_the_peer_layer_types(self):
        registry = peer_registry()
        self.assertEqual(registry.names(), ["bye", "hello", "ping"])
        self.assertIs(registry.get("hello"), HELLO)
        self.assertIsNone(registry.get("nope"))

    def test_upper_layers_add_types(self):
        probe = MessageType("probe", {"sequence": int})
        registry = peer_registry(probe)
        self.assertIn("probe", registry)
        self.assertEqual(len(registry.names()), len(PEER_TYPES) + 1)

    def test_extended_leaves_the_original_alone(self):
        base = peer_registry()
        more = base.extended(MessageType("probe", {}))
        self.assertIn("probe", more)
        self.assertNotIn("probe", base)

    def test_duplicate_name_refused(self):
        with self.assertRaises(ValueError):
            Registry([MessageType("x", {}), MessageType("x", {"a": int})])

    def test_envelope_keys_reserved(self):
        self.assertRaises(TypeError, MessageType, "x", {"type": str})
        self.assertRaises(TypeError, MessageType, "x", {"v": int})

    def test_bad_schemas_refused_at_definition(self):
        self.assertRaises(TypeError, MessageType, "x", {"a": [int, str]})
        self.assertRaises(TypeError, MessageType, "x", {"a": set})
        self.assertRaises(TypeError, MessageType, "x", {"a": [Optional(int)]})
        self.assertRaises(TypeError, MessageType, "", {})


class SchemaTests(unittest.TestCase):
    TYPE = MessageType("t", {
        "n": int, "x": float, "s": str, "b": bool, "any": dict, "items": list,
        "points": [{"x": float, "y": float}], "tags": MapOf([str]),
        "maybe": Optional(str),
    })
    GOOD = {"n": 1, "x": 1.5, "s": "s", "b": False, "any": {"k": [1, None]},
            "items": [1, "a"], "points": [{"x": 0, "y": 1.0}], "tags": {"a": ["b"]}}

    def error(self, **changes):
        fields = dict(self.GOOD, **changes)
        with self.assertRaises(FieldError) as caught:
            self.TYPE.validate(fields)
        return str(caught.exception)

    def test_good(self):
        self.TYPE.validate(self.GOOD)
        self.TYPE.validate(dict(self.GOOD, maybe="here"))

    def test_optional_present_must_match(self):
        self.assertEqual(self.error(maybe=None), "maybe: must be a string, got null")

    def test_paths(self):
        self.assertEqual(self.error(points=[{"x": 0, "y": 0}, {"x": "0", "y": 0}]),
                         "points[1].x: must be a number, got a string")
        self.assertEqual(self.error(tags={"a": ["b", 3]}),
                         "tags.a[1]: must be a string, got an integer")
        self.assertEqual(self.error(points=[{"x": 0}]), "points[0].y: is required")
        self.assertEqual(self.error(points=[{"x": 0, "y": 0, "z": 0}]),
                         "points[0].z: unknown field")

    def test_float_must_be_finite(self):
        self.assertEqual(self.error(x=float("inf")), "x: must be a finite number")

    def test_any_containers(self):
        self.assertEqual(self.error(any=[]), "any: must be an object, got an array")
        self.assertEqual(self.error(items={}), "items: must be an array, got an object")


class SettingsHashTests(unittest.TestCase):
    def test_order_does_not_matter(self):
        self.assertEqual(settings_hash({"voters": ["a", "b"], "lease": 2.0}),
                         settings_hash({"lease": 2.0, "voters": ["a", "b"]}))

    def test_values_matter(self):
        self.assertNotEqual(settings_hash({"voters": ["a", "b"]}),
                            settings_hash({"voters": ["b", "a"]}))

    def test_format(self):
        digest = settings_hash({})
        self.assertTrue(digest.startswith("sha256:"))
        self.assertEqual(len(digest), len("sha256:") + 64)

    def test_not_json_refused(self):
        self.assertRaises(TypeError, settings_hash, {"x": object()})
        self.assertRaises(ValueError, settings_hash, {"x": float("nan")})
