"""What can go wrong with a request, independent of gRPC: the servicer maps each to a status code."""


class RequestError(Exception):
    """The base: its message tells the client what to fix."""


class InvalidRequest(RequestError):
    pass


class ModelNotFound(RequestError):
    pass


class QueueFull(RequestError):
    pass


class Unavailable(RequestError):
    """Loading, or shutting down."""


class DecodeFailed(RequestError):
    """The runtime failed on the batch this request was in."""


class DeadlineExceeded(RequestError):
    pass


class Replaced(Unavailable):
    """The model version was replaced by a newer one while the request was on its way: it
    should go to the new one."""
