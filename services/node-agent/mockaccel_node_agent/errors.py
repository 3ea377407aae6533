"""The node agent's error tree, named for what the caller does next.

    MockaccelError                     (mockaccel_common.errors)
    └── NodeAgentError
        ├── ClaimError                 this claim cannot be prepared as asked: answer it per claim;
        │   │                          kubelet retries, nothing on the node changed
        │   ├── ClaimNotFoundError     the ResourceClaim does not exist (any more)
        │   ├── ClaimNotAllocatedError the claim has no allocation yet
        │   ├── ClaimReplacedError     namespace/name now hold a claim with another UID
        │   ├── NoDevicesError         the allocation has no device of this driver
        │   └── DeviceUnavailableError a device is missing, unreadable, on another node or held
        ├── InvalidRequestError        a malformed kubelet request (INVALID_ARGUMENT)
        ├── RetryableError(delay)      a dependency is down; try again after ``delay`` seconds
        │   └── ApiUnavailableError    the API server cannot be reached or refused us
        └── PermanentError             start-up cannot continue without an operator
            └── CheckpointCorruptError the checkpoint does not verify; it is kept untouched

Library errors (ApiException, aiohttp errors, OSError, GRPCError) are
translated where they are caught, with ``raise … from``. The gRPC adapter maps
this tree to per-claim errors and gRPC statuses in one function.
"""

from __future__ import annotations

from mockaccel_common.errors import MockaccelError


class NodeAgentError(MockaccelError):
    """Base of the node agent's errors."""


class ClaimError(NodeAgentError):
    """One claim cannot be prepared; the message is what kubelet shows in the pod's events."""


class ClaimNotFoundError(ClaimError):
    pass


class ClaimNotAllocatedError(ClaimError):
    pass


class ClaimReplacedError(ClaimError):
    pass


class NoDevicesError(ClaimError):
    pass


class DeviceUnavailableError(ClaimError):
    pass


class InvalidRequestError(NodeAgentError):
    """The request itself is malformed (for example a claim without a UID)."""


class RetryableError(NodeAgentError):
    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ApiUnavailableError(RetryableError):
    """The API server could not answer (connection refused, timeout, 5xx, 401/403)."""


class PermanentError(NodeAgentError):
    """Retrying will not help; the process stops and says why."""


class CheckpointCorruptError(PermanentError):
    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path
