"""Linux's ``ip`` command for floating addresses: arguments, output, one blocking removal.

Standard library only, and nothing from CLSD: the lease guard (which runs
under ``python -I -S``, without site-packages) imports this file from its
directory to remove addresses at a deadline with the same commands the
daemon uses (L{remove_now}). The daemon's asynchronous driver,
L{clsd.address.driver.IpCommandDriver}, builds its commands and reads their
output with the pure functions here.

Why ``ip`` and not netlink from Python: iproute2 is on every Linux host, its
argument syntax has been stable for two decades, and a subprocess keeps the
guard free of third-party code. An add or a removal costs one short-lived
process (a few milliseconds).
"""

import ipaddress
import json
import os
import subprocess
import sys

try:
    from clsd.address import ipadm
except ImportError:  # the lease guard, which loads this file from its directory
    import ipadm  # type: ignore[no-redef,import-not-found]

#: Where ``ip`` usually is; tried before C{PATH} (the guard and daemons run
#: with a minimal environment).
IP_CANDIDATES = ("/sbin/ip", "/usr/sbin/ip", "/bin/ip", "/usr/bin/ip")

#: Linux refuses interface names longer than this (IFNAMSIZ - 1).
MAX_INTERFACE_NAME = 15

#: How long L{remove_now} waits for ``ip`` (it runs in the guard, which has
#: other deadlines to keep).
REMOVE_TIMEOUT = 2.0

#: ``ip`` runs with this environment: no locale, no surprises from the caller's.
IP_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def find_ip(path: str | None = None) -> str | None:
    """The path of the ``ip`` program, or None when there is none."""
    candidates = list(IP_CANDIDATES)
    search = os.environ.get("PATH", "") if path is None else path
    candidates += [os.path.join(d, "ip") for d in search.split(os.pathsep) if d]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_interface_name(interface: str) -> str:
    """C{interface} if it is a name Linux could give an interface; ValueError naming the problem."""
    if not isinstance(interface, str) or not interface:
        raise ValueError(f"interface name must be a non-empty string, not {interface!r}")
    if len(interface.encode()) > MAX_INTERFACE_NAME:
        raise ValueError(f"interface name {interface!r} is longer than {MAX_INTERFACE_NAME} bytes")
    if interface in (".", "..") or any(c == "/" or c == ":" or c.isspace() for c in interface):
        raise ValueError(f"interface name {interface!r} is not valid "
                         "(no '/', ':', spaces, '.' or '..')")
    return interface


def as_interface_address(address) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An C{IPv4Interface}/C{IPv6Interface} from one or from its text (``192.0.2.10/24``)."""
    if isinstance(address, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return address
    if isinstance(address, str) and "/" in address:
        return ipaddress.ip_interface(address)
    raise ValueError(f"address must carry its prefix length (like 192.0.2.10/24), not {address!r}")


def family_option(address):
    return "-6" if address.version == 6 else "-4"


def add_argv(ip: str, interface: str, address) -> list[str]:
    """The command that adds C{address} to C{interface}.

    IPv4 gets the subnet's broadcast address (``brd +``, as ``ip`` leaves it
    unset otherwise) when the prefix has one. IPv6 skips duplicate address
    detection (``nodad``): the lease already makes the address this node's
    alone, and a tentative address could not be bound by the service nor
    answer neighbour solicitations for the second or more that DAD takes.
    """
    argv = [ip, family_option(address), "addr", "add", str(address), "dev", interface]
    if address.version == 4 and address.network.prefixlen <= 30:
        argv += ["brd", "+"]
    if address.version == 6:
        argv.append("nodad")
    return argv


def remove_argv(ip: str, interface: str, address) -> list[str]:
    """The command that removes C{address} (its prefix length must match) from C{interface}."""
    return [ip, family_option(address), "addr", "del", str(address), "dev", interface]


def show_argv(ip: str, interface: str, json_output: bool = True) -> list[str]:
    """The command that lists C{interface}'s addresses (JSON, or one line each)."""
    if json_output:
        return [ip, "-j", "addr", "show", "dev", interface]
    return [ip, "-o", "addr", "show", "dev", interface]


def parse_show_json(text: str) -> set:
    """The addresses in the output of ``ip -j addr show dev X``: a set of interface addresses."""
    found = set()
    for link in json.loads(text or "[]"):
        for info in link.get("addr_info", ()):
            if info.get("family") in ("inet", "inet6") and "local" in info:
                found.add(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
    return found


def parse_show_text(text: str) -> set:
    """The addresses in the output of ``ip -o addr show dev X`` (iproute2 without JSON)."""
    found = set()
    for line in text.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word in ("inet", "inet6"):
                found.add(ipaddress.ip_interface(words[i + 1]))
    return found


def _run(argv, timeout):
    """(exit status, the tool's message); status None when it could not run or did not finish."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env=IP_ENVIRONMENT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    return result.returncode, (result.stderr.strip() or result.stdout.strip())


def try_remove(interface: str, address, ip: str | None = None,
               timeout: float = REMOVE_TIMEOUT, platform: str | None = None) -> tuple[bool, str]:
    """Remove C{address} from C{interface} now (blocking); C{(gone, message)}, never raises.

    C{gone} is True when the address is not on the interface afterwards:
    removed now, or not there to begin with (checked by listing, so that the
    answer does not depend on the wording of ``ip``'s error messages). On
    Solaris and illumos (C{platform} ``sunos5``) ``ipadm`` does it
    (L{clsd.address.ipadm.try_remove}).
    """
    if (platform or sys.platform).startswith("sunos"):
        return ipadm.try_remove(interface, address, timeout=timeout)
    try:
        interface = check_interface_name(interface)
        address = as_interface_address(address)
        ip = ip or find_ip()
        if ip is None:
            return False, "the ip command (iproute2) is not installed"
        status, message = _run(remove_argv(ip, interface, address), timeout)
        if status == 0:
            return True, "removed"
        status_show, listing = _run(show_argv(ip, interface, json_output=False), timeout)
        if status_show == 0 and address not in parse_show_text(listing):
            return True, "was not there"
        return False, message or f"ip exited with status {status}"
    except Exception as e:  # the guard must keep running whatever happens here
        return False, f"{type(e).__name__}: {e}"


def remove_now(interface: str, address, ip: str | None = None,
               timeout: float = REMOVE_TIMEOUT) -> bool:
    """Remove C{address} from C{interface} now (blocking); True when it is gone. Never raises."""
    return try_remove(interface, address, ip, timeout)[0]
