"""The errors `naaice.api` raises. Every one says what was wrong and what to do about it.

NaaiceApiError
├── InvalidObjectError        a body does not match the custom resource's schema
├── InvalidNameError          a name or annotation value has the wrong form
└── InvalidHolderIdentityError  a Lease holderIdentity is not <namespace>/<name>/<uid>
"""

from __future__ import annotations


class NaaiceApiError(ValueError):
    """Base of the errors raised while reading or naming naaice objects."""


class InvalidObjectError(NaaiceApiError):
    """A Kubernetes body does not match the model of its kind; `problems` lists
    `(field path, message)` pairs with camelCase paths as `kubectl` prints them."""

    def __init__(self, kind: str, problems: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(
            f"invalid {kind}: {listed} (see docs/reference/crds.md for the fields and rules)"
        )


class InvalidNameError(NaaiceApiError):
    """A name, label value or annotation value cannot be used as given."""


class InvalidHolderIdentityError(NaaiceApiError):
    """A Lease's holderIdentity is not `<namespace>/<naajob name>/<naajob uid>`."""
