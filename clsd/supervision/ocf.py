"""OCF resource agents and LSB init scripts: where they are, what they take, their environment.

An OCF agent ``provider:type`` is the executable
``$OCF_ROOT/resource.d/<provider>/<type>``; its ``meta-data`` action prints
an XML description of its parameters and advised action timeouts, which the
configuration is checked against when it is read (a missing required
parameter or a misspelt one stops start-up, not the first failover).
"""

import os
import re
import subprocess
import xml.etree.ElementTree as ElementTree

import attrs

DEFAULT_OCF_ROOT = "/usr/lib/ocf"
#: How long ``meta-data`` may take at configuration load.
METADATA_TIMEOUT = 10.0
#: Action timeouts when neither the configuration nor the agent gives one.
DEFAULT_ACTION_TIMEOUT = 20.0

_AGENT_NAME = re.compile(r"^(?:ocf:)?([A-Za-z0-9_.+-]+):([A-Za-z0-9_.+-]+)$")


class AgentError(Exception):
    """The agent cannot be used as configured (the message says why)."""


@attrs.frozen
class Parameter:
    name: str
    required: bool
    default: str | None = None


@attrs.frozen
class MetaData:
    """What an agent's ``meta-data`` says: its parameters and advised timeouts (seconds)."""

    parameters: tuple
    timeouts: dict = attrs.field(factory=dict, hash=False)

    @property
    def names(self):
        return [p.name for p in self.parameters]


def resolve_agent(name, ocf_root=DEFAULT_OCF_ROOT):
    """C{(provider, type, path)} of agent C{name} ("heartbeat:IPaddr2").

    @raise AgentError: a malformed name, or no executable where it was looked for.
    """
    match = _AGENT_NAME.match(name)
    if match is None:
        raise AgentError(f"must be provider:type (as heartbeat:IPaddr2), got {name!r}")
    provider, kind = match.groups()
    path = os.path.join(ocf_root, "resource.d", provider, kind)
    if not os.path.isfile(path):
        where = os.path.join(ocf_root, "resource.d", provider)
        known = sorted(os.listdir(where)) if os.path.isdir(where) else None
        hint = (f"; {where} has {', '.join(known)}" if known
                else f"; there is no provider directory {where}")
        raise AgentError(f"no agent {name!r}: looked for {path}{hint}")
    if not os.stat(path).st_mode & 0o111 or not os.access(path, os.X_OK):
        raise AgentError(f"agent {path} is not executable")
    return provider, kind, path


def parse_duration(text):
    """Seconds in an OCF timeout ("20s", "20", "500ms", "2m", "1h"); None if unreadable."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|msec|s|sec|m|min|h|hr)?\s*", text or "")
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "msec": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60,
                    "h": 3600, "hr": 3600}[unit]


def parse_metadata(xml_text):
    """A L{MetaData} from an agent's XML.

    @raise AgentError: when it is not the XML of a resource agent.
    """
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as e:
        raise AgentError(f"its meta-data is not XML ({e})") from None
    if root.tag != "resource-agent":
        raise AgentError(f"its meta-data is <{root.tag}>, not <resource-agent>")
    parameters = []
    for element in root.iterfind("parameters/parameter"):
        name = element.get("name")
        if not name:
            continue
        content = element.find("content")
        default = content.get("default") if content is not None else None
        parameters.append(Parameter(name, element.get("required") in ("1", "true", "yes"),
                                    default))
    timeouts = {}
    for element in root.iterfind("actions/action"):
        seconds = parse_duration(element.get("timeout"))
        if element.get("name") and seconds is not None and seconds > 0:
            timeouts.setdefault(element.get("name"), seconds)
    return MetaData(tuple(parameters), timeouts)


def read_metadata(path, ocf_root=DEFAULT_OCF_ROOT, timeout=METADATA_TIMEOUT):
    """Run C{path meta-data} and parse what it prints.

    @raise AgentError: it failed, hung, or printed something else.
    """
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "OCF_ROOT": ocf_root}
    try:
        done = subprocess.run([path, "meta-data"], env=env, capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AgentError(f"{path} meta-data did not finish within {timeout:g}s") from None
    except OSError as e:
        raise AgentError(f"cannot run {path} meta-data: {e.strerror or e}") from None
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AgentError(f"{path} meta-data exited with code {done.returncode}"
                         + (f": {error[-1]}" if error else ""))
    return parse_metadata(done.stdout)


def check_params(agent, metadata, params):
    """Every required parameter given, no unknown one.

    @raise AgentError: naming the missing or unknown parameters and the agent's list.
    """
    names = metadata.names
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise AgentError(f"agent {agent} has no parameter {', '.join(unknown)} "
                         f"(its parameters: {', '.join(names) or 'none'})")
    missing = [p.name for p in metadata.parameters if p.required and p.name not in params]
    if missing:
        raise AgentError(f"agent {agent} requires parameter {', '.join(missing)}")


def agent_environment(config, action):
    """The environment an LSB/OCF C{action} of C{config} adds to the service's own."""
    timeout = {"start": config.start_timeout, "stop": config.stop_timeout}.get(
        action, config.monitor_timeout)
    if config.type != "ocf":
        return {}
    env = {
        "OCF_ROOT": config.ocf_root,
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "0",
        "OCF_RESOURCE_INSTANCE": config.name,
        "OCF_RESOURCE_TYPE": os.path.basename(config.script),
        "OCF_RESOURCE_PROVIDER": os.path.basename(os.path.dirname(config.script)),
        "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000)),
    }
    if action in ("monitor", "status"):
        env["OCF_RESKEY_CRM_meta_interval"] = str(int(config.monitor_interval * 1000))
    for name, value in config.params.items():
        env[f"OCF_RESKEY_{name}"] = value
    return env
