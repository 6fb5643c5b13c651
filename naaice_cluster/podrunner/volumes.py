"""What a pod's volumes contain, computed purely (`volume_files`), and how they are written to
a per-pod directory (`materialise`). Supported: configMap, secret, downwardAPI, projected
(configMap, secret, downwardAPI, serviceAccountToken), emptyDir and hostPath. Called by the pod
runner's worker; the service-account token comes in through a callback."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from naaice_cluster.podrunner.envresolve import ContainerConfigError, Lookup, field_value

JSON = dict[str, Any]
#: `token_for(serviceAccountToken source)` → a token bound to the pod.
TokenSource = Callable[[JSON], str]


@dataclass(frozen=True)
class VolumeFile:
    path: str
    data: bytes
    mode: int


def _items(
    *,
    data: dict[str, bytes],
    items: list[JSON] | None,
    default_mode: int,
    what: str,
    optional: bool,
) -> list[VolumeFile]:
    if items is None:
        return [VolumeFile(k, v, default_mode) for k, v in sorted(data.items())]
    out = []
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise ContainerConfigError(f"{what}: key {key!r} not found")
        out.append(
            VolumeFile(str(item.get("path", key)), data[key], int(item.get("mode", default_mode)))
        )
    return out


def _object_data(obj: JSON, kind: str) -> dict[str, bytes]:
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _from_object(
    *, source: JSON, kind: str, namespace: str, lookup: Lookup, default_mode: int
) -> list[VolumeFile]:
    name = source.get("name") or source.get("secretName") or ""
    optional = bool(source.get("optional", False))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return []
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found (volume)')
    return _items(
        data=_object_data(obj, kind),
        items=source.get("items"),
        default_mode=int(source.get("defaultMode", default_mode)),
        what=f"{kind} {namespace}/{name}",
        optional=optional,
    )


def _downward(*, source: JSON, pod: JSON, default_mode: int) -> list[VolumeFile]:
    out = []
    for item in source.get("items") or []:
        if "fieldRef" not in item:
            raise ContainerConfigError(
                "downwardAPI resourceFieldRef is not supported by the embedded pod runner"
            )
        value = field_value(pod=pod, path=item["fieldRef"]["fieldPath"])
        out.append(VolumeFile(item["path"], value.encode(), int(item.get("mode", default_mode))))
    return out


def volume_files(
    *, volume: JSON, pod: JSON, lookup: Lookup, token_for: TokenSource
) -> list[VolumeFile] | None:
    """The files of one volume, or None for volumes that are a plain directory (emptyDir).

    hostPath volumes are not listed here: the runner mounts the host path itself."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        src = volume["configMap"]
        return _from_object(
            source=src, kind="ConfigMap", namespace=namespace, lookup=lookup, default_mode=0o644
        )
    if "secret" in volume:
        src = volume["secret"]
        return _from_object(
            source=src, kind="Secret", namespace=namespace, lookup=lookup, default_mode=0o644
        )
    if "downwardAPI" in volume:
        src = volume["downwardAPI"]
        return _downward(source=src, pod=pod, default_mode=int(src.get("defaultMode", 0o644)))
    if "projected" in volume:
        proj = volume["projected"]
        mode = int(proj.get("defaultMode", 0o644))
        files: list[VolumeFile] = []
        for source in proj.get("sources") or []:
            if "configMap" in source:
                files += _from_object(
                    source=source["configMap"],
                    kind="ConfigMap",
                    namespace=namespace,
                    lookup=lookup,
                    default_mode=mode,
                )
            elif "secret" in source:
                files += _from_object(
                    source=source["secret"],
                    kind="Secret",
                    namespace=namespace,
                    lookup=lookup,
                    default_mode=mode,
                )
            elif "downwardAPI" in source:
                files += _downward(source=source["downwardAPI"], pod=pod, default_mode=mode)
            elif "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                files.append(VolumeFile(sat["path"], token_for(sat).encode(), mode))
            else:
                kinds = ", ".join(sorted(source))
                raise ContainerConfigError(f"projected source {kinds} is not supported")
        return files
    if "emptyDir" in volume or "hostPath" in volume:
        return None
    kinds = ", ".join(sorted(k for k in volume if k != "name"))
    raise ContainerConfigError(
        f"volume {volume.get('name')!r}: type {kinds} is not supported by the embedded pod runner "
        "(supported: configMap, secret, downwardAPI, projected, emptyDir, hostPath)"
    )


def materialise(*, directory: Path, files: list[VolumeFile] | None) -> None:
    """Write a volume's files under `directory` (created; files relative to it)."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in files or []:
        target = (directory / f.path).resolve()
        if directory.resolve() not in target.parents:
            raise ContainerConfigError(f"volume item path {f.path!r} escapes the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
        os.chmod(target, f.mode)
