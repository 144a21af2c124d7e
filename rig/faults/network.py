"""Network faults on loopback: drop chosen (source, destination) pairs, or a random share.

The rig owns one nft table (``inet clsd_faults_<pid>``) or, without nft, one
iptables chain (``CLSD_FAULTS_<pid>`` jumped to from INPUT). The desired state
(blocked pairs, loss rules) lives here; every change rewrites the whole table
in one atomic transaction, so there is never a half-applied partition, and
removing the table removes every rule the rig made.

Packets are dropped on input, on ``lo`` only: the sender sees no error, just
silence, like a real network fault. Only 127.0.0.0/8 addresses are accepted.
"""

import itertools
import os
import shutil
import subprocess
import tempfile

from rig.faults.cleanup import default_cleanups, owned_name, owner_of
from rig.faults.topology import check_loopback

#: Loss is drawn per packet from this many buckets: 1e-6 resolution.
LOSS_BUCKETS = 1_000_000


class ToolMissing(RuntimeError):
    """A system tool the rig needs is not installed."""


class FirewallError(RuntimeError):
    """The firewall tool refused a command; the message carries its stderr."""


def _run(argv, stdin=None):
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} is not installed") from None
    if result.returncode != 0:
        raise FirewallError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _check_fraction(fraction):
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"loss must be in (0, 1], got {fraction!r}")
    return fraction


class NftBackend:
    """One ``inet`` table per rig; rewritten atomically with ``nft -f -``."""

    name = "nft"

    @staticmethod
    def available():
        return shutil.which("nft") is not None

    def render(self, table, pairs, losses):
        elements = ", ".join(f"{a} . {b}" for a, b in sorted(pairs))
        lines = [
            # Declare, delete and recreate in one transaction: atomic replace.
            f"table inet {table}",
            f"delete table inet {table}",
            f"table inet {table} {{",
            "  set blocked {",
            "    type ipv4_addr . ipv4_addr",
        ]
        if elements:
            lines.append(f"    elements = {{ {elements} }}")
        lines += [
            "  }",
            "  chain input {",
            "    type filter hook input priority -10; policy accept;",
            '    iifname "lo" ip saddr . ip daddr @blocked drop',
        ]
        for address, fraction in losses:
            threshold = round(fraction * LOSS_BUCKETS)
            for field in ("saddr", "daddr"):
                lines.append(
                    f'    iifname "lo" ip {field} {address} '
                    f"numgen random mod {LOSS_BUCKETS} < {threshold} drop"
                )
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def apply(self, table, pairs, losses):
        _run(["nft", "-f", "-"], self.render(table, pairs, losses))

    def remove(self, table):
        if table in self.list_owned():
            _run(["nft", "delete", "table", "inet", table])

    def list_owned(self):
        names = []
        for line in _run(["nft", "list", "tables"]).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "table" and parts[1] == "inet" \
                    and owner_of(parts[2]) is not None:
                names.append(parts[2])
        return names


class IptablesBackend:
    """One chain per rig in the filter table, jumped to from INPUT for ``lo``."""

    name = "iptables"

    #: Left by the rig that made iptables-nft create the ``ip filter`` table,
    #: so that whichever rig removes the last rule also removes the table
    #: (rigs run in parallel under trial -j2; the creator may finish first).
    CREATED_MARKER = os.path.join(tempfile.gettempdir(), "clsd_faults_ip_filter_created")

    def __init__(self):
        self._checked_filter_table = False

    @staticmethod
    def available():
        return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None

    @staticmethod
    def chain(table):
        return table.upper()[:28]

    def render(self, table, pairs, losses):
        chain = self.chain(table)
        # With --noflush, declaring the chain flushes just that chain.
        lines = ["*filter", f":{chain} - [0:0]"]
        for a, b in sorted(pairs):
            lines.append(f"-A {chain} -i lo -s {a}/32 -d {b}/32 -j DROP")
        for address, fraction in losses:
            for flag in ("-s", "-d"):
                lines.append(
                    f"-A {chain} -i lo {flag} {address}/32 -m statistic --mode random "
                    f"--probability {fraction:.6f} -j DROP"
                )
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def apply(self, table, pairs, losses):
        chain = self.chain(table)
        if not self._checked_filter_table:
            self._checked_filter_table = True
            if _nft_filter_table_exists() is False:
                with open(self.CREATED_MARKER, "w"):
                    pass
        _run(["iptables-restore", "--noflush"], self.render(table, pairs, losses))
        jump = ["INPUT", "-i", "lo", "-j", chain]
        try:
            _run(["iptables", "-C", *jump])
        except FirewallError:
            _run(["iptables", "-I", *jump])

    def remove(self, table):
        chain = self.chain(table)
        if chain not in self._chains():
            return
        while True:
            try:
                _run(["iptables", "-D", "INPUT", "-i", "lo", "-j", chain])
            except FirewallError:
                break
        _run(["iptables", "-F", chain])
        _run(["iptables", "-X", chain])
        if os.path.exists(self.CREATED_MARKER):
            rules = [line for line in _run(["iptables", "-S"]).splitlines()
                     if not line.startswith("-P ")]
            if not rules and _nft_filter_table_exists():
                _run(["nft", "delete", "table", "ip", "filter"])
                try:
                    os.unlink(self.CREATED_MARKER)
                except FileNotFoundError:
                    pass

    def _chains(self):
        return [line.split()[1] for line in _run(["iptables", "-S"]).splitlines()
                if line.startswith("-N ")]

    def list_owned(self):
        return [chain.lower() for chain in self._chains() if owner_of(chain) is not None]


def _nft_filter_table_exists():
    """True/False for iptables-nft's ``ip filter`` table; None without nft (legacy iptables)."""
    if shutil.which("nft") is None:
        return None
    result = subprocess.run(["nft", "list", "table", "ip", "filter"], capture_output=True,
                            timeout=30)
    return result.returncode == 0


def default_backend():
    """nft when installed (preferred), else iptables; L{ToolMissing} when neither."""
    for backend in (NftBackend, IptablesBackend):
        if backend.available():
            return backend()
    raise ToolMissing("neither nft nor iptables is installed (apt-get install nftables)")


class Firewall:
    """The rig's own rule set: blocked pairs and per-address loss, each undoable by token.

    Several faults may block overlapping pairs; lifting one keeps the pairs
    the others still need.
    """

    def __init__(self, *, name=None, backend=None, cleanups=None):
        self.table = name or owned_name("net")
        self.backend = backend or default_backend()
        self._cleanups = cleanups or default_cleanups
        self._blocks = {}
        self._losses = {}
        self._tokens = itertools.count(1)
        self._cleanup_token = None

    @property
    def blocked(self):
        """Every pair blocked now."""
        return frozenset().union(*self._blocks.values())

    @property
    def losses(self):
        return tuple(self._losses.values())

    def block(self, pairs):
        """Drop every packet from a to b for each C{(a, b)} in C{pairs}; returns a token."""
        pairs = frozenset((check_loopback(a), check_loopback(b)) for a, b in pairs)
        token = next(self._tokens)
        self._blocks[token] = pairs
        self._apply_or_undo(token)
        return token

    def loss(self, address, fraction):
        """Drop C{fraction} of the packets from and to C{address}; returns a token."""
        token = next(self._tokens)
        self._losses[token] = (check_loopback(address), _check_fraction(fraction))
        self._apply_or_undo(token)
        return token

    def lift(self, token):
        """Undo one L{block} or L{loss}."""
        if self._blocks.pop(token, None) is None and self._losses.pop(token, None) is None:
            return
        self._apply()

    def heal(self):
        """Lift everything; the table stays (empty) until L{close}."""
        self._blocks.clear()
        self._losses.clear()
        if self._cleanup_token is not None:
            self._apply()

    def close(self):
        """Remove the table and every rule in it."""
        self._blocks.clear()
        self._losses.clear()
        if self._cleanup_token is not None:
            self._cleanups.discard(self._cleanup_token)
            self._cleanup_token = None
            self.backend.remove(self.table)

    def _apply_or_undo(self, token):
        try:
            self._apply()
        except Exception:
            self._blocks.pop(token, None)
            self._losses.pop(token, None)
            raise

    def _apply(self):
        if self._cleanup_token is None:
            # Registered before the first rule exists: an interrupted apply
            # still gets removed.
            self._cleanup_token = self._cleanups.add(
                lambda: self.backend.remove(self.table),
                f"remove {self.backend.name} rules {self.table}",
            )
        self.backend.apply(self.table, self.blocked, self.losses)


def remove_stale(backend=None, *, force=False, alive=None):
    """Remove owned tables whose owner process is gone (all of them with C{force})."""
    from clsd.supervision.pgroups import pid_alive

    alive = alive or pid_alive
    backend = backend or default_backend()
    removed = []
    for table in backend.list_owned():
        owner = owner_of(table)
        if force or not alive(owner):
            backend.remove(table)
            removed.append(f"{backend.name} {table}")
    return removed

