"""The node agent: kubelet device plugin, NAA inventory and health, energy exporter."""
