"""Kopf registration: the only place that imports kopf. Handlers parse, enqueue or call one
service, and return."""
