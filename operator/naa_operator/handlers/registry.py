"""Kopf handlers of the operator, registered into a fresh `OperatorRegistry` per operator so
several operators (tests, two replicas) can live in one process.

Handlers are thin: NAA and Bitstream watch events update the `Controller`'s view of them and
trigger a scheduling pass; the admission handler asks `services.admission` and maps its verdict
to Kopf. NAAJobs, their pods and the allocation Leases are not watched through Kopf: the
controller's own informers watch them into its caches (with the resourceVersion bookkeeping and
the relist on 410 that reading from a cache needs) and enqueue the jobs."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from naa_operator.services.admission import Admission, AdmissionDenied
from naa_operator.services.controller import Controller

log = logging.getLogger("naaice.operator")

LABEL_JOB = "naaice.io/naajob"
#: The mutating webhook handler's id; Kopf serves it at the URL path "/<id>" (handlers/run.py).
WEBHOOK_ID = "naaice-naa-spec"


def build_registry(*, controller: Controller, admission: Admission | None) -> kopf.OperatorRegistry:
    """Handlers for NAAs, Bitstreams and (optionally) pod admission."""
    registry = kopf.OperatorRegistry()

    @kopf.on.event("naaice.io", "v1alpha1", "networkattachedaccelerators", registry=registry)
    def naa_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe("naa", type, dict(body))
        controller.trigger_schedule()

    @kopf.on.event("naaice.io", "v1alpha1", "bitstreams", registry=registry)
    def bitstream_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.observe("bitstream", type, dict(body))
        controller.trigger_schedule()

    if admission is not None:

        @kopf.on.mutate(
            "",
            "v1",
            "pods",
            id=WEBHOOK_ID,
            labels={LABEL_JOB: kopf.PRESENT},
            operations=["CREATE"],
            registry=registry,
        )
        async def inject(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
            try:
                change = await admission.mutate(dict(body))
            except AdmissionDenied as exc:
                raise kopf.AdmissionError(str(exc), code=403) from exc
            if change is not None:
                patch.update(change)

    return registry
