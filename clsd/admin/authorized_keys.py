"""OpenSSH authorized-keys files: parsed tolerantly, re-read at every login.

Twisted's own reader lets some malformed lines raise (``ssh-ed25519`` alone
raises IndexError), which would refuse every key of the file; here a bad
line is reported and skipped. Re-reading the file at each login lets an
operator add or revoke a key without restarting or reloading the daemon.
"""

import attrs
from twisted.conch.checkers import IAuthorizedKeysDB
from twisted.conch.ssh import keys
from twisted.logger import Logger
from zope.interface import implementer


NOT_A_KEY = (
    "not a public key in OpenSSH format 'TYPE BASE64 [COMMENT]' "
    "(key options such as from= are not supported)"
)


@attrs.frozen
class BadLine:
    number: int
    reason: str


def parse_authorized_keys(data):
    """Yield a L{keys.Key} or a L{BadLine} for every key line of C{data} (bytes).

    Blank lines and ``#`` comments are skipped. Key options (``from="..."
    ssh-ed25519 ...``) are not supported: such a line is a L{BadLine}.
    """
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            key = keys.Key.fromString(line)
        except Exception:  # conch raises BadKeyError, IndexError, struct.error, ...
            yield BadLine(number, NOT_A_KEY)
            continue
        if not key.isPublic():
            yield BadLine(number, "a private key; list public keys only")
            continue
        yield key


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """The keys of one file, for every user name (the file, not the name, grants access).

    @param path: the file; C{None} means no keys at all (the role is unused).
    """

    def __init__(self, path, log=None):
        self.path = path
        self.log = log or Logger(namespace="clsd.admin")

    def getAuthorizedKeys(self, username):
        if self.path is None:
            return []
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            self.log.error(
                "cannot read admin key file {path}: {reason}", path=self.path, reason=e.strerror
            )
            return []
        found = []
        for item in parse_authorized_keys(data):
            if isinstance(item, BadLine):
                self.log.warn(
                    "admin key file {path} line {number} skipped: {reason}",
                    path=self.path, number=item.number, reason=item.reason,
                )
            else:
                found.append(item)
        return found
