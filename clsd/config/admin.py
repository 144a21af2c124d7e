"""The ``[admin]`` table: the SSH command shell and the loopback telnet manhole.

Nothing listens unless configured. SSH admits public keys only, with two
roles: ``authorized_keys`` (admin) and ``monitor_keys`` (read-only). The
telnet manhole sends its password in clear text, so it may only listen on a
loopback address and needs a bcrypt hash of that password.
"""

import ipaddress
import os
import re

import attrs

from clsd.admin.authorized_keys import BadLine, parse_authorized_keys
from clsd.admin.budget import DEFAULT_MANHOLE_BUDGET, MIN_MANHOLE_BUDGET, budget_limit
from clsd.config.address import parse_listen_address
from clsd.config.reader import ConfigError

#: Generated on first start when absent, then kept (ed25519, mode 0600).
DEFAULT_HOST_KEY_NAME = "ssh_host_ed25519_key"

#: ``$2b$12$`` + 53 characters of bcrypt's base64 (22 of salt, 31 of hash).
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


@attrs.frozen
class AdminConfig:
    #: C{(host, port)} of the SSH listener; C{None}: no SSH listener. Port 0 = any free port.
    ssh: tuple | None = None
    #: Path of the SSH host key; C{None} only when built by hand without a data_dir.
    host_key: str | None = None
    #: Keys with full access (OpenSSH authorized_keys format, re-read at each login).
    authorized_keys: str | None = None
    #: Keys that may only run read-only commands.
    monitor_keys: str | None = None
    #: C{(host, port)} of the telnet manhole, always a loopback address; C{None}: off.
    telnet: tuple | None = None
    telnet_password_hash: str | None = None
    #: Seconds one manhole input may run on the reactor thread before it is
    #: interrupted. C{None} in the file means "the default, or less if the
    #: lease timing needs it"; L{settle_manhole_budget} fills it in.
    manhole_budget: float | None = DEFAULT_MANHOLE_BUDGET


def parse_admin(table, data_dir, base_dir):
    """Build an L{AdminConfig} from the ``[admin]`` L{Table} (C{None}: no such table)."""
    default_host_key = os.path.join(data_dir, DEFAULT_HOST_KEY_NAME)
    if table is None:
        return AdminConfig(host_key=default_host_key, manhole_budget=None)
    ssh = _listen_address(table, "ssh")
    host_key = _path(table, "host_key", base_dir) or default_host_key
    authorized_keys = _key_file(table, "authorized_keys", base_dir)
    monitor_keys = _key_file(table, "monitor_keys", base_dir)
    if ssh is not None and authorized_keys is None and monitor_keys is None:
        raise table.error(
            "ssh", "is set but no one could log in: set authorized_keys and/or monitor_keys"
        )
    telnet = _listen_address(table, "telnet")
    if telnet is not None and not _is_loopback(telnet[0]):
        raise table.error(
            "telnet",
            "must be a loopback address (127.x.x.x or [::1]): the telnet manhole sends "
            f"its password in clear text, got {telnet[0]!r}",
        )
    password_hash = _password_hash(table, telnet is not None)
    manhole_budget = None
    if "manhole_budget" in table:
        manhole_budget = table.number("manhole_budget", minimum=MIN_MANHOLE_BUDGET)
    table.finish()
    return AdminConfig(
        ssh=ssh, host_key=host_key, authorized_keys=authorized_keys,
        monitor_keys=monitor_keys, telnet=telnet, telnet_password_hash=password_hash,
        manhole_budget=manhole_budget,
    )


def settle_manhole_budget(source, admin, quorum, membership):
    """C{admin} with its manhole budget checked against the lease and membership timing.

    A budget set in the file must not exceed L{budget_limit}; an unset one is
    the default, lowered to the limit when a short lease needs it.
    """
    if quorum is None:
        limit = budget_limit(None, None, membership.heartbeat_interval,
                             membership.failure_timeout)
        why = "a quarter of membership.failure_timeout - heartbeat_interval"
    else:
        limit = budget_limit(quorum.lease, quorum.drift_margin,
                             membership.heartbeat_interval, membership.failure_timeout)
        why = ("quorum.lease/16, half a lease round's timeout; half of quorum.lease/3 - "
               "drift_margin; a quarter of membership.failure_timeout - heartbeat_interval")
    if admin.manhole_budget is None:
        return attrs.evolve(admin, manhole_budget=min(DEFAULT_MANHOLE_BUDGET, limit))
    if admin.manhole_budget > limit:
        raise ConfigError(
            source, "admin.manhole_budget",
            f"must be at most {limit:.3g} s ({why}), so that a blocked manhole input "
            f"cannot cost this node its leases or membership; got {admin.manhole_budget!r}",
        )
    return admin


def _listen_address(table, key):
    """``"ip:port"`` as C{(ip, port)}; absent or ``""`` is C{None} (off)."""
    value = table.string(key, None, nonempty=False)
    if not value:
        return None
    return parse_listen_address(table, key, value, 7422)


def _is_loopback(host):
    return ipaddress.ip_address(host).is_loopback


def _path(table, key, base_dir):
    value = table.string(key, None)
    if value is None:
        return None
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))


def _key_file(table, key, base_dir):
    """A readable authorized-keys file whose every line is a public key."""
    path = _path(table, key, base_dir)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise table.error(key, f"cannot read {path}: {e.strerror}") from None
    for item in parse_authorized_keys(data):
        if isinstance(item, BadLine):
            raise table.error(key, f"{path} line {item.number}: {item.reason}")
    return path


def _password_hash(table, telnet_on):
    value = table.string("telnet_password_hash", None)
    if value is None:
        if telnet_on:
            raise table.error(
                "telnet_password_hash",
                "is required when telnet is on (a bcrypt hash of the manhole password)",
            )
        return None
    if not BCRYPT_HASH.match(value):
        raise table.error(
            "telnet_password_hash",
            f"must be a bcrypt hash ($2b$12$ and 53 more characters, 60 in all); "
            f"got {len(value)} characters starting {value[:4]!r}",
        )
    return value
