"""Solaris 11 and illumos: ``ipadm`` commands for floating addresses, and one blocking removal.

Standard library only, and nothing from CLSD, like L{clsd.address.ipcmd}
(which hands the lease guard's removal to L{try_remove} here on these
systems). The daemon's asynchronous driver,
L{clsd.address.driver.IpadmDriver}, builds its commands and reads their
output with the pure functions here.

``ipadm`` manages *address objects* named ``INTERFACE/NAME``. Each floating
address gets a name derived from the address itself (L{address_object}),
so that a restarted daemon, or the guard, finds the object an earlier run
made. Objects are created temporary (``-t``): a floating address must not
come back by itself when the machine reboots.

Built from Oracle's ipadm(8) manual page; not run on a Solaris machine here.
"""

import hashlib
import ipaddress
import os
import subprocess

#: Where ``ipadm`` is on Solaris 11 and illumos.
IPADM_CANDIDATES = ("/usr/sbin/ipadm", "/sbin/ipadm")

#: How long L{try_remove} waits for ``ipadm`` (it runs in the guard).
REMOVE_TIMEOUT = 2.0

IPADM_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

#: The start of every address object name this driver makes.
OBJECT_PREFIX = "clsd"


def find_ipadm() -> str | None:
    """The path of the ``ipadm`` program, or None when there is none."""
    for candidate in IPADM_CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def address_object(interface: str, address) -> str:
    """The address object of C{address} on C{interface}: ``net0/clsd`` and 10 hex digits.

    Derived from the address with its prefix (a restart finds it again);
    ``ipadm`` wants the part after ``/`` to start with a letter and hold
    letters and digits only, and the whole name under 32 characters.
    """
    digest = hashlib.sha256(str(address).encode()).hexdigest()[:10]
    return f"{interface}/{OBJECT_PREFIX}{digest}"


def add_argv(ipadm: str, interface: str, address) -> list[str]:
    """The command that adds C{address} to C{interface} as a temporary static address object."""
    return [ipadm, "create-addr", "-t", "-T", "static", "-a", f"local={address}",
            address_object(interface, address)]


def remove_argv(ipadm: str, addrobj: str) -> list[str]:
    """The command that deletes address object C{addrobj} (``net0/clsd...``)."""
    return [ipadm, "delete-addr", addrobj]


def show_argv(ipadm: str, interface: str) -> list[str]:
    """The command that lists C{interface}'s address objects, one ``addrobj:addr`` a line."""
    return [ipadm, "show-addr", "-p", "-o", "addrobj,addr", interface]


def _split_fields(line: str) -> list[str]:
    """The fields of one line of ``ipadm -p`` output: ``:`` separates, ``\\:`` is a colon."""
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def parse_show(text: str) -> dict:
    """C{{address: addrobj}} from ``ipadm show-addr -p -o addrobj,addr`` (unreadable lines skipped).

    An address not yet known (``?``, a DHCP object still asking) is skipped.
    """
    found = {}
    for line in text.splitlines():
        fields = _split_fields(line.strip())
        if len(fields) != 2 or "/" not in fields[1]:
            continue
        try:
            found[ipaddress.ip_interface(fields[1])] = fields[0]
        except ValueError:
            continue
    return found


def _run(argv, timeout):
    """(exit status, the tool's message, its output); status None when it could not run."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env=IPADM_ENVIRONMENT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e), ""
    return result.returncode, result.stderr.strip() or result.stdout.strip(), result.stdout


def try_remove(interface: str, address, ipadm: str | None = None,
               timeout: float = REMOVE_TIMEOUT) -> tuple[bool, str]:
    """Remove C{address} from C{interface} now (blocking); C{(gone, message)}, never raises.

    The derived object is deleted first; when that fails, the interface is
    listed: absent counts as gone, and an address held by another object
    (added by hand) is deleted through that object.
    """
    try:
        address = ipaddress.ip_interface(address)
        ipadm = ipadm or find_ipadm()
        if ipadm is None:
            return False, "the ipadm command is not installed"
        status, message, _ = _run(remove_argv(ipadm, address_object(interface, address)),
                                  timeout)
        if status == 0:
            return True, "removed"
        status_show, listing_message, listing = _run(show_argv(ipadm, interface), timeout)
        if status_show != 0:
            return False, message or listing_message
        other = parse_show(listing).get(address)
        if other is None:
            return True, "was not there"
        status, message, _ = _run(remove_argv(ipadm, other), timeout)
        if status == 0:
            return True, f"removed (address object {other})"
        return False, message or f"ipadm exited with status {status}"
    except Exception as e:  # the guard must keep running whatever happens here
        return False, f"{type(e).__name__}: {e}"
