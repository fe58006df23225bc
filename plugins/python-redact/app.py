"""wasmhook transform plugin: redacts fields from an event before it is sent.

Config (`python-redact.toml`, `[config]` table):
  redact       list of dotted paths (`customer.email`, `items.0.card`) to remove.
  replacement  optional string; when set, redacted values are replaced by it
               instead of being removed (the key stays, its value is masked).

Input: the event. When the webhook rendered a body and it is a JSON object,
that body is redacted; otherwise a JSON envelope of the event is built
(`id`, `entity`, `operation`, `entity_id`, `timestamp`, `source`, `data`, `old`)
and its `data` and `old` rows are redacted.

Output: the redacted JSON, `application/json`.
Errors: `config` for a bad config table; `invalid-input` when a row or the
rendered body is not JSON.
"""

import json
from typing import Any, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types


def _config() -> dict:
    try:
        config = json.loads(host.config() or "{}")
    except ValueError as error:
        raise Err(types.Error_Config(f"the host's config is not JSON: {error}"))
    if not isinstance(config, dict):
        raise Err(types.Error_Config("the config is not a table"))
    unknown = set(config) - {"redact", "replacement"}
    if unknown:
        raise Err(types.Error_Config(f"unknown config keys: {', '.join(sorted(unknown))}"))
    redact = config.get("redact", [])
    if not isinstance(redact, list) or not all(isinstance(p, str) and p for p in redact):
        raise Err(types.Error_Config("`redact` must be a list of dotted paths"))
    replacement = config.get("replacement")
    if replacement is not None and not isinstance(replacement, str):
        raise Err(types.Error_Config("`replacement` must be a string"))
    return {"redact": redact, "replacement": replacement}


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise Err(types.Error_InvalidInput(f"{what} is not JSON: {error}"))


def redact(value: Any, path: str, replacement: Optional[str]) -> bool:
    """Removes (or masks) the value at `path` inside `value`; False if absent."""
    *parents, last = path.split(".")
    for segment in parents:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return False
    if isinstance(value, dict) and last in value:
        if replacement is None:
            del value[last]
        else:
            value[last] = replacement
        return True
    if isinstance(value, list) and last.isdigit() and int(last) < len(value):
        if replacement is None:
            del value[int(last)]
        else:
            value[int(last)] = replacement
        return True
    return False


class Transform(exports.Transform):
    def transform(self, event: types.Event, body: Optional[bytes]) -> types.Payload:
        config = _config()
        paths, replacement = config["redact"], config["replacement"]

        document = None
        if body is not None:
            rendered = _parse(body.decode("utf-8", errors="replace"), "the rendered body")
            if isinstance(rendered, dict):
                document = rendered
                for path in paths:
                    redact(document, path, replacement)

        if document is None:
            meta = event.meta
            data = _parse(event.data, "the event's row")
            old = None if event.old is None else _parse(event.old, "the event's old row")
            for path in paths:
                redact(data, path, replacement)
                if old is not None:
                    redact(old, path, replacement)
            document = {
                "id": meta.id,
                "entity": meta.entity,
                "operation": meta.operation,
                "entity_id": meta.entity_id,
                "timestamp": meta.timestamp,
                "source": meta.source,
                "data": data,
                "old": old,
            }

        out = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        return types.Payload(body=out.encode("utf-8"), headers=[], content_type="application/json")
