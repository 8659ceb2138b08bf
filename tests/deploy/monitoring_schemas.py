"""Minimal JSON schemas of the Prometheus Operator kinds the chart renders.

Only the fields depwatch uses, with the types, patterns and enums of the
monitoring.coreos.com/v1 CRDs (prometheus-operator v0.7x openAPIV3Schema), and
``additionalProperties: false`` everywhere we know the full shape, so a typo or
a misplaced key fails like the API server's structural-schema pruning would
silently drop it. Free-form operator types we pass through from values
(tlsConfig, relabel configs) are checked for their documented keys only.
"""

from __future__ import annotations

from typing import Any

import jsonschema

__all__ = ["SCHEMAS", "validate_custom_resource"]

# monitoring.coreos.com/v1 Duration
_DURATION = {
    "type": "string",
    "pattern": (
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
        r"(([0-9]+)ms)?)$"
    ),
}
_DNS_SUBDOMAIN = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _DNS_SUBDOMAIN,
        "namespace": {**_DNS_SUBDOMAIN, "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}

_LABEL_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                    },
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}

_NAMESPACE_SELECTOR = {
    "type": "object",
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}

_SECRET_KEY = {
    "type": "object",
    "required": ["key"],
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string"},
        "optional": {"type": "boolean"},
    },
    "additionalProperties": False,
}

_CONFIGMAP_OR_SECRET = {
    "type": "object",
    "properties": {"configMap": _SECRET_KEY, "secret": _SECRET_KEY},
    "additionalProperties": False,
}

_TLS_CONFIG = {
    "type": "object",
    "properties": {
        "ca": _CONFIGMAP_OR_SECRET,
        "cert": _CONFIGMAP_OR_SECRET,
        "keySecret": _SECRET_KEY,
        "serverName": {"type": "string"},
        "insecureSkipVerify": {"type": "boolean"},
        # ServiceMonitor only (file paths inside the Prometheus pod)
        "caFile": {"type": "string"},
        "certFile": {"type": "string"},
        "keyFile": {"type": "string"},
    },
    "additionalProperties": False,
}

_BASIC_AUTH = {
    "type": "object",
    "properties": {"username": _SECRET_KEY, "password": _SECRET_KEY},
    "additionalProperties": False,
}

_RELABEL_CONFIG = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": [
                "replace",
                "Replace",
                "keep",
                "Keep",
                "drop",
                "Drop",
                "hashmod",
                "HashMod",
                "labelmap",
                "LabelMap",
                "labeldrop",
                "LabelDrop",
                "labelkeep",
                "LabelKeep",
                "lowercase",
                "Lowercase",
                "uppercase",
                "Uppercase",
                "keepequal",
                "KeepEqual",
                "dropequal",
                "DropEqual",
            ],
        },
        "modulus": {"type": "integer"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "targetLabel": {"type": "string"},
    },
    "additionalProperties": False,
}


def _endpoint(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "port": {"type": "string"},
            "path": {"type": "string"},
            "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": _DURATION,
            "scrapeTimeout": _DURATION,
            "honorLabels": {"type": "boolean"},
            "tlsConfig": _TLS_CONFIG,
            "basicAuth": _BASIC_AUTH,
            "relabelings": {"type": "array", "items": _RELABEL_CONFIG},
            "metricRelabelings": {"type": "array", "items": _RELABEL_CONFIG},
            **extra,
        },
        "additionalProperties": False,
    }


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"monitoring.coreos.com/v1 {kind} (fields depwatch uses)",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


_RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"type": ["string", "integer"]},
        "for": _DURATION,
        "keep_firing_for": {**_DURATION, "minLength": 1},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _resource(
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": _NAMESPACE_SELECTOR,
                "selector": _LABEL_SELECTOR,
                "endpoints": {"type": "array", "items": _endpoint({"targetPort": {}})},
            },
            "additionalProperties": False,
        },
    ),
    "PodMonitor": _resource(
        "PodMonitor",
        {
            "type": "object",
            "required": ["selector"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": _NAMESPACE_SELECTOR,
                "selector": _LABEL_SELECTOR,
                "podMetricsEndpoints": {"type": "array", "items": _endpoint({})},
            },
            "additionalProperties": False,
        },
    ),
    "PrometheusRule": _resource(
        "PrometheusRule",
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "rules": {"type": "array", "items": _RULE},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    ),
}


def validate_custom_resource(obj: dict[str, Any]) -> None:
    """Validate a Prometheus Operator object; KeyError for a kind we have no schema for."""
    schema = SCHEMAS[obj["kind"]]
    jsonschema.Draft7Validator(schema).validate(obj)
