"""The Kopf operator reconciling NAAJobs: placement, Leases, flashing, NAA Spec, energy."""
