"""Pure decisions of the operator: placement, conditions, the lifecycle state machine, energy
windows. No I/O and no Kubernetes client: `services` feed it views and act on its answers."""
