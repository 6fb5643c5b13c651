"""Admission of pods labelled `naaice.io/naajob` that other controllers create: inject the
job's NAA Spec, or refuse the pod. Called by the mutating webhook handler.

A pod is refused when its NAAJob does not exist, has no flashed NAAs yet (the controller that
made it retries), or when the pod sets `NAA_SPEC` itself to anything but its own job's spec —
a pod must not reach NAAs that another job holds."""

from __future__ import annotations

from typing import Any

from naa_operator.adapters.kube import Kube
from naa_operator.core import conditions as cond
from naa_operator.core import injection
from naa_operator.services import views


class AdmissionDenied(Exception):
    """The pod must not be created; the message says why and what to do."""


class Admission:
    def __init__(self, *, kube: Kube) -> None:
        self.kube = kube

    async def mutate(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        """A merge patch of the pod (its new `spec`, and the annotation its spec file is
        projected from), or None when nothing changes."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        job_name = (meta.get("labels") or {}).get(injection.LABEL_JOB, "")
        declared = injection.declared_specs(pod.get("spec") or {})
        job = await self.kube.get_naajob(namespace, job_name)
        if job is None:
            raise AdmissionDenied(
                f"pod is labelled {injection.LABEL_JOB}={job_name} but NAAJob "
                f"{namespace}/{job_name} does not exist; create the NAAJob first or fix the label"
            )
        status = job.get("status") or {}
        spec_original = status.get("naaSpec") or ""
        foreign = {d for d in declared if d != spec_original}
        if foreign:
            raise AdmissionDenied(
                f"pod sets NAA_SPEC={sorted(foreign)[0]!r}, which is not the NAA Spec of its "
                f"NAAJob {namespace}/{job_name}; remove NAA_SPEC from the pod, the operator "
                "injects the right one"
            )
        assigned = views.assignments(job)
        conds = views.job_conditions(job)
        if not assigned or not cond.is_true(conds, cond.FLASHED):
            raise AdmissionDenied(
                f"NAAJob {namespace}/{job_name} has no flashed NAAs yet; create the pod once its "
                "Flashed condition is True"
            )
        if cond.is_terminal(conds):
            raise AdmissionDenied(f"NAAJob {namespace}/{job_name} has finished")
        as_json = injection.render_json_for_job(job, assigned)
        new = injection.inject(
            pod.get("spec") or {}, original=injection.render_original(assigned), as_json=as_json
        )
        notes = injection.spec_annotations(as_json)
        have = meta.get("annotations") or {}
        if new == pod.get("spec") and all(have.get(k) == v for k, v in notes.items()):
            return None
        return {"spec": new, "metadata": {"annotations": notes}}
