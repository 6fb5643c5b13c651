"""The NAA Spec a job's pods receive, and the pods themselves: pure body transformations.

Called by `services.jobs` (pods the operator creates) and `services.admission` (pods other
controllers create, through the mutating webhook). Three forms, as contracts.md fixes them:
`NAA_SPEC` in the original NAAICE `address:port:fn_code:param_count` comma list (unmodified host
programs read it), `NAAICE_NAA_SPEC_JSON`, and the file `/etc/naaice/naa-spec.json`: a
downward-API volume projecting the pod's own annotation `naaice.io/naa-spec` (the same JSON), so
the file costs no extra object and no extra API call, and lives and dies with the pod."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from naa_operator.core.model import Assignment
from naaice.spec import (
    NaaSpecDocument,
    NaaSpecEntry,
    NaaSpecJobRef,
    NaaSpecJsonEntry,
    render_naa_spec,
)

ENV_SPEC = "NAA_SPEC"
ENV_SPEC_JSON = "NAAICE_NAA_SPEC_JSON"
SPEC_DIR = "/etc/naaice"
SPEC_FILE = "naa-spec.json"
VOLUME = "naaice-naa-spec"
ANNOTATION_SPEC = "naaice.io/naa-spec"
"""The pod annotation holding the JSON form; the spec file is projected from it."""
LABEL_JOB = "naaice.io/naajob"
LABEL_ATTEMPT = "naaice.io/attempt"


def render_original(assignments: Sequence[Assignment]) -> str:
    """`NAA_SPEC` exactly as NAAICE host programs parse it: `addr:port:fn:nparams,...`
    (`naaice.spec`, which refuses entries the original library would misread)."""
    return render_naa_spec(
        NaaSpecEntry(address=a.address, port=a.port, fn_code=a.fn_code, param_count=a.param_count)
        for a in assignments
    )


def render_json(
    assignments: Sequence[Assignment],
    *,
    functions: Mapping[str, str],
    namespace: str,
    name: str,
    uid: str | None,
) -> str:
    """The JSON form (`naaice.spec.NaaSpecDocument`): the same entries in the same order, with
    the NAA, request, function and bitstream behind each; `functions` maps request → function."""
    return NaaSpecDocument(
        naajob=NaaSpecJobRef(namespace=namespace, name=name, uid=uid),
        entries=tuple(
            NaaSpecJsonEntry(
                naa=a.naa,
                request=a.request,
                function=functions.get(a.request, a.request),
                address=a.address,
                port=a.port,
                fn_code=a.fn_code,
                param_count=a.param_count,
                bitstream=a.bitstream,
                digest=a.digest,
            )
            for a in assignments
        ),
    ).to_json()


def render_json_for_job(job: Mapping[str, Any], assignments: Sequence[Assignment]) -> str:
    """`render_json` with the request → function map and the reference of an NAAJob body."""
    meta = job.get("metadata") or {}
    functions = {
        str(r.get("name", "")): str(r.get("function", ""))
        for r in (job.get("spec") or {}).get("naas") or []
    }
    return render_json(
        assignments,
        functions=functions,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=meta.get("uid"),
    )


def spec_annotations(as_json: str) -> dict[str, str]:
    """The annotations a pod needs besides `inject`'s spec: the file's content."""
    return {ANNOTATION_SPEC: as_json}


def inject(pod_spec: Mapping[str, Any], *, original: str, as_json: str) -> dict[str, Any]:
    """A copy of `pod_spec` whose containers (and init containers) get both env vars and the
    spec file mounted; existing values of those env vars are replaced. The file's volume
    projects the pod's annotation `ANNOTATION_SPEC` (`spec_annotations`)."""
    spec = copy.deepcopy(dict(pod_spec))
    for field in ("initContainers", "containers"):
        containers = spec.get(field) or []
        for container in containers:
            env = [
                e
                for e in container.get("env") or []
                if e.get("name") not in (ENV_SPEC, ENV_SPEC_JSON)
            ]
            env += [
                {"name": ENV_SPEC, "value": original},
                {"name": ENV_SPEC_JSON, "value": as_json},
            ]
            container["env"] = env
            mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != VOLUME]
            mounts.append({"name": VOLUME, "mountPath": SPEC_DIR, "readOnly": True})
            container["volumeMounts"] = mounts
        if containers:
            spec[field] = containers
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") != VOLUME]
    volumes.append(
        {
            "name": VOLUME,
            "downwardAPI": {
                "items": [
                    {
                        "path": SPEC_FILE,
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_SPEC}']"},
                    }
                ]
            },
        }
    )
    spec["volumes"] = volumes
    return spec


def declared_specs(pod_spec: Mapping[str, Any]) -> set[str]:
    """The literal `NAA_SPEC` values a pod's containers set themselves."""
    out: set[str] = set()
    for field in ("initContainers", "containers"):
        for container in pod_spec.get(field) or []:
            for env in container.get("env") or []:
                if env.get("name") == ENV_SPEC and "value" in env:
                    out.add(str(env["value"]))
    return out


def job_pod(
    *,
    job_name: str,
    job_uid: str,
    namespace: str,
    template: Mapping[str, Any],
    pod_name: str,
    attempt: int,
    original: str,
    as_json: str,
    api_version: str,
    kind: str,
) -> dict[str, Any]:
    """A pod of the job from `spec.template`, owned by the NAAJob, with the NAA Spec injected.

    `restartPolicy` is forced to Never: a failed attempt is retried by the operator (with
    `backoffLimit`), possibly on other NAAs, not restarted in place by the kubelet."""
    meta = copy.deepcopy(dict(template.get("metadata") or {}))
    labels = dict(meta.get("labels") or {})
    labels[LABEL_JOB] = job_name
    labels[LABEL_ATTEMPT] = str(attempt)
    spec = inject(template.get("spec") or {}, original=original, as_json=as_json)
    spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {**(meta.get("annotations") or {}), **spec_annotations(as_json)},
            "ownerReferences": [
                {
                    "apiVersion": api_version,
                    "kind": kind,
                    "name": job_name,
                    "uid": job_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
