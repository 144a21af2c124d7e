"""Errors the ownership core and its shells both raise or catch.

Kept apart from the shells so the core never imports a Twisted module to name one.
"""


class GuardUnavailable(RuntimeError):
    """The lease guard is not running: a managed service must not be started.

    Transient (the guard is restarted): a start refused for it is tried
    again, not counted as the service's failure.
    """

    transient = True
