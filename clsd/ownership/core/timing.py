"""Lease timing: every deadline of the protocol as a pure function of two settings.

Two numbers are configured, the lease length ``T`` and the drift margin ``m``;
everything else derives from them, so that the safety argument in
doc/ownership.md can be checked against one place.  All times are the local
node's ``time.monotonic()``; no timestamp is ever compared across machines,
only durations are sent.
"""

import attrs

#: Default lease: long enough that a renewal can be retried several times on a
#: loaded machine before the holder must stop, short enough that failover after
#: a crash stays near 2 s (the issue's goal: p50 <= 2.5 s, p99 <= 3.5 s).
DEFAULT_LEASE = 2.0

#: The fastest any two lease clocks may drift apart, as a rate.  Leases are
#: timed on CLOCK_MONOTONIC_RAW (clsd.clock), which no time daemon slews, and
#: ordinary crystals stay within 100 ppm, so 500 ppm is a safe bound.  A holder whose clock runs slow and a voter
#: whose clock runs fast disagree by up to 2 * rate * T over one lease.
MAX_DRIFT_RATE = 500e-6

#: Default drift margin: the holder treats its lease as ending this much before
#: the voters do.  It must cover (a) clock drift, 2 * 500 ppm * 2 s = 2 ms, and
#: (b) the time between the deadline and the service really being gone: the
#: lease guard waking up, SIGKILL delivery and process exit under load.  0.1 s
#: covers (a) fifty times over and leaves ~98 ms for (b).
DEFAULT_DRIFT_MARGIN = 0.1


#: The least the margin must leave for the kill at the deadline: the lease
#: guard's SIGKILL came 4-5 ms after the deadline and the group was seen gone
#: 10-19 ms after it on a loaded 2-core machine (tests/ownership/test_guard_process.py).
KILL_LATENCY = 0.025


def minimum_drift_margin(lease: float) -> float:
    """The smallest margin for a lease of C{lease} s: clock drift over it, plus the kill."""
    return 2 * MAX_DRIFT_RATE * lease + KILL_LATENCY


@attrs.frozen
class LeaseTiming:
    """All lease deadlines, derived from C{lease} (T) and C{drift_margin} (m)."""

    lease: float = DEFAULT_LEASE
    drift_margin: float = DEFAULT_DRIFT_MARGIN

    def __attrs_post_init__(self) -> None:
        if not self.lease > 0:
            raise ValueError(f"lease must be positive, got {self.lease!r}")
        if not 0 <= self.drift_margin < self.lease / 4:
            raise ValueError(
                f"drift_margin must be in [0, lease/4), got {self.drift_margin!r}"
            )

    # -- the holder ---------------------------------------------------------

    def holder_expiry(self, sent_at: float) -> float:
        """When the holder must consider its lease over: T - m after it SENT the granted request.

        Voters start their T when the request arrives, which is later than
        C{sent_at}; the margin absorbs drift and the kill latency.
        """
        return sent_at + self.lease - self.drift_margin

    @property
    def renew_after(self) -> float:
        """A holder first tries to renew T/3 after the request it holds by was sent.

        Renewing at a third leaves two thirds of the lease for retries and
        keeps the voters' expiry between 2T/3 and T away from any crash.
        """
        return self.lease / 3

    @property
    def renew_retry(self) -> float:
        """Spacing of renewal retries once the first attempt failed."""
        return self.lease / 12

    @property
    def stop_window(self) -> float:
        """How long the service gets for a TERM stop when the lease cannot be renewed.

        The holder sends TERM at C{holder_expiry - stop_window} and KILL (via
        the lease guard) at C{holder_expiry}.
        """
        return self.lease / 4

    def stop_at(self, sent_at: float) -> float:
        """When a holder that could not renew starts stopping its service."""
        return self.holder_expiry(sent_at) - self.stop_window

    # -- rounds and retries ---------------------------------------------------

    @property
    def round_timeout(self) -> float:
        """A prepare/propose round with no majority of answers by then has failed."""
        return self.lease / 8

    @property
    def acquire_retry(self) -> float:
        """How often an acquirer retries when it learned nothing better (e.g. no voter answered)."""
        return self.lease / 4

    @property
    def retry_slack(self) -> float:
        """Added to a voter's 'remaining' hint before retrying, to land just after expiry."""
        return max(0.01, self.lease / 100)

    # -- the voter ------------------------------------------------------------

    @property
    def voter_quiet(self) -> float:
        """A voter that (re)starts grants nothing for this long (diskless safety).

        Whatever it granted before it lost its memory expires within T of its
        own clock; T + m also covers the drift of that clock.
        """
        return self.lease + self.drift_margin

    @property
    def max_request(self) -> float:
        """The longest lease a voter will grant (a guard against a misconfigured peer)."""
        return self.lease * 1.5

    # -- bounds used by tests and the docs ----------------------------------

    def failover_after_crash(self, renew_phase: float) -> float:
        """Time from the holder's crash until a polling successor can hold the lease.

        C{renew_phase} is how long after the last successful renewal the
        crash happened (0 <= phase < T/3): the voters free the lease T after
        that renewal, and the successor, which polls at the voters' own
        'remaining' hint, retries C{retry_slack} later and needs two round
        trips (ignored here).  Mean over a uniform phase: T - T/6 + slack.
        """
        return self.lease - renew_phase + self.retry_slack

    def reacquire_bound(self, detection: float) -> float:
        """Worst case from a healed network (or a crash) until an eligible node holds again.

        C{detection}: how long membership needs to agree on who is alive.
        Terms: membership agrees; a voter restarted just before may still be
        quiet (T + m); an old lease may still run at the voters (T); then a
        retry interval, a round timeout and slack.
        """
        return (detection + self.voter_quiet + self.lease + self.acquire_retry
                + self.round_timeout + 2 * self.retry_slack)
