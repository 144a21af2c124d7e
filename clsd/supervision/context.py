"""What a service's process is started with: argv, environment, directory, credentials.

The environment is deliberately minimal and the same on every machine, so a
service behaves the same whether the daemon was started from a login shell,
an init system or a test: nothing of the daemon's own environment leaks into
it. The service's ``env`` table is added on top; later, cluster ownership
adds ``CLSD_*`` variables (owner, fencing epoch) through L{ExecContext.with_env}.
"""

import os
import pwd

import attrs

#: The search path every service gets (the one systemd gives its services).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The locale every service gets unless its ``env`` says otherwise: the
#: portable "C" locale, so output and sorting do not depend on the machine.
DEFAULT_LANG = "C"


@attrs.frozen
class Credentials:
    """Who a service runs as (only when the daemon runs as root)."""

    name: str
    uid: int
    gid: int
    #: Supplementary groups, the user's primary group included.
    groups: tuple
    home: str
    shell: str

    @classmethod
    def for_user(cls, name):
        """Look C{name} up in the user database; L{KeyError} if there is no such user."""
        entry = pwd.getpwnam(name)
        return cls(
            name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid,
            groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
            home=entry.pw_dir or "/", shell=entry.pw_shell or "/bin/sh",
        )


@attrs.frozen
class ExecContext:
    """Everything needed to start one instance of a service."""

    argv: tuple
    env: dict = attrs.field(hash=False)
    cwd: str | None = None
    credentials: Credentials | None = None

    def with_env(self, **extra):
        """A copy whose environment also has C{extra} (for ``CLSD_*`` variables)."""
        return attrs.evolve(self, env={**self.env, **extra})


def minimal_environment(credentials=None):
    """PATH, LANG, HOME, USER, LOGNAME: of the service's user, else of the daemon's."""
    if credentials is not None:
        name, home = credentials.name, credentials.home
    else:
        try:
            entry = pwd.getpwuid(os.geteuid())
        except KeyError:  # a uid without an entry (some containers)
            name, home = str(os.geteuid()), "/"
        else:
            name, home = entry.pw_name, entry.pw_dir or "/"
    return {
        "PATH": DEFAULT_PATH,
        "LANG": DEFAULT_LANG,
        "HOME": home,
        "USER": name,
        "LOGNAME": name,
    }


def exec_context(config, action="start"):
    """The L{ExecContext} of a L{clsd.config.ServiceConfig}.

    LSB/OCF services: of their agent's C{action}, with the OCF environment.

    @raise KeyError: when C{config.user} no longer exists (it was checked
        when the configuration was read).
    """
    credentials = Credentials.for_user(config.user) if config.user else None
    env = minimal_environment(credentials)
    env.update(config.env)
    argv = config.argv
    if getattr(config, "script", None) is not None:
        from clsd.supervision.ocf import agent_environment

        env.update(agent_environment(config, action))
        argv = config.action_argv(action)
    return ExecContext(argv=tuple(argv), env=env, cwd=config.cwd, credentials=credentials)
