"""The controller's error tree: each class names what the caller does next.

    MockaccelError                      (mockaccel_common.errors)
    └── ControllerError
        ├── RetryableError(delay)       try again later; ``delay`` is the server's hint or None
        │   ├── ApiUnavailableError     no answer from the API server (connection, timeout, 5xx, 429)
        │   │   └── ApiRefusedError     401/403: RBAC or a token that may lag at install; retried, logged loudly
        │   ├── ConflictError           stored state changed under us (409, failed precondition): re-list, re-plan
        │   └── NodeMissingError        the Node object does not exist (yet, or any more): publish nothing
        ├── NotFoundError               the object is already gone: deletes treat it as done
        └── PermanentError              retrying cannot help (400/422, unknown API): the process exits

Library exceptions (kubernetes_asyncio's ApiException, aiohttp and socket
errors) are translated in one function, ``adapters.k8s.translate_api_error``,
always with ``raise … from``, following the status policy every service shares
(``mockaccel_common.kube.classify_status``); nothing above the adapter catches a library type.
"""

from __future__ import annotations

from mockaccel_common.errors import MockaccelError


class ControllerError(MockaccelError):
    """Base of the controller's own errors."""


class RetryableError(ControllerError):
    """A failure that may go away by itself; ``delay`` is a server hint (seconds) or None."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ApiUnavailableError(RetryableError):
    """The API server did not answer (outage, restart, overload)."""


class ApiRefusedError(ApiUnavailableError):
    """The API server refused us (401/403): RBAC not in effect yet, or a rotated token."""


class ConflictError(RetryableError):
    """Optimistic concurrency lost: a slice changed or vanished between list and write."""


class NodeMissingError(RetryableError):
    """This node's Node object is absent, so slices would have no owner and be collected at once."""


class NotFoundError(ControllerError):
    """The addressed object does not exist."""


class PermanentError(ControllerError):
    """The request is wrong or forbidden; retrying it cannot succeed."""
