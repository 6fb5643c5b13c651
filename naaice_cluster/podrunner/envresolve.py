"""Pure resolution of a container's environment, command line and downward-API values from a
Pod object, the way kubelet does it: `envFrom` first, then `env` (later entries win),
`valueFrom` (configMapKeyRef, secretKeyRef, fieldRef), and `$(VAR)` expansion in values,
command and args. Called by the pod runner's worker; ConfigMaps and Secrets come in through a
lookup function so this module does no I/O."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

JSON = dict[str, Any]
#: `lookup(kind, namespace, name)` → the object, or None when it does not exist.
Lookup = Callable[[str, str, str], JSON | None]

_EXPAND = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class ContainerConfigError(Exception):
    """The pod references something that does not exist or is not supported; kubelet reports
    such containers as waiting with reason CreateContainerConfigError and keeps retrying."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones stay as written,
    `$$` is a literal `$`."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _EXPAND.sub(repl, value)


def field_value(*, pod: JSON, path: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for `pod`."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs", [])),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs", [])),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {}) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    m = _FIELD_SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ContainerConfigError(f"fieldRef.fieldPath {path!r} is not supported")


def _data_of(obj: JSON, kind: str) -> dict[str, str]:
    out = {k: str(v) for k, v in (obj.get("data") or {}).items()}
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in out.items()}
    out.update(
        {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (obj.get("binaryData") or {}).items()
        }
    )
    return out


def _key_ref(*, ref: JSON, kind: str, namespace: str, lookup: Lookup, var: str) -> str | None:
    name, key = ref.get("name", ""), ref["key"]
    optional = bool(ref.get("optional", False))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found (env {var})')
    data = _data_of(obj, kind)
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def resolve_env(
    *,
    pod: JSON,
    container: JSON,
    lookup: Lookup,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `container`: `base` (what the runtime provides), then envFrom, then
    env, with `$(VAR)` expanded against everything defined before each entry."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for field_name, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = source.get(field_name)
            if ref is None:
                continue
            obj = lookup(kind, namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            for key, data in _data_of(obj, kind).items():
                env[prefix + key] = data
    for entry in container.get("env") or []:
        name = entry["name"]
        if "valueFrom" not in entry:
            env[name] = expand(entry.get("value", ""), env)
            continue
        source = entry["valueFrom"]
        value: str | None
        if "configMapKeyRef" in source:
            value = _key_ref(
                ref=source["configMapKeyRef"],
                kind="ConfigMap",
                namespace=namespace,
                lookup=lookup,
                var=name,
            )
        elif "secretKeyRef" in source:
            value = _key_ref(
                ref=source["secretKeyRef"],
                kind="Secret",
                namespace=namespace,
                lookup=lookup,
                var=name,
            )
        elif "fieldRef" in source:
            value = field_value(pod=pod, path=source["fieldRef"]["fieldPath"])
        else:
            kinds = ", ".join(sorted(source))
            raise ContainerConfigError(
                f"env {name}: valueFrom {kinds} is not supported by the embedded pod runner "
                "(supported: configMapKeyRef, secretKeyRef, fieldRef)"
            )
        if value is not None:
            env[name] = value
    return env


def command_line(*, container: JSON, env: Mapping[str, str]) -> list[str]:
    """`command` + `args` with `$(VAR)` expanded. The image is ignored here, so a container
    without `command` has nothing to run: that is a configuration error for this runner."""
    command = list(container.get("command") or [])
    if not command:
        raise ContainerConfigError(
            f"container {container.get('name')!r} has no command: the embedded pod runner does "
            "not run images, so every container needs an explicit `command`"
        )
    return [expand(part, env) for part in (*command, *(container.get("args") or []))]
