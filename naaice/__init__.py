"""The shared, pure kernel of naaice: custom-resource models, the NAA Spec, energy integration.

Imported by every component; imports no I/O framework (enforced by import-linter)."""
