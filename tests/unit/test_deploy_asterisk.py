"""deploy/asterisk is consistent: the PBX config, its compose file and the bridge config agree.

Asterisk and Docker are not available where the tests run, so the files are parsed here (a small
reader for Asterisk's config format and for the few YAML shapes the compose file uses) and checked
against each other: the names, credentials, addresses and ports one file relies on exist in the others.
Also: the Twilio address data in ``sipbridge.providers.twilio_ranges`` is well formed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sipbridge import config
from sipbridge.providers import policy, twilio_ranges

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "asterisk"


# -- Asterisk config files ----------------------------------------------------------------------


@dataclass
class Section:
    name: str
    is_template: bool
    templates: list[str]
    options: list[tuple[str, str]] = field(default_factory=list)


def _strip_comment(line: str) -> str:
    """Asterisk: ';' starts a comment anywhere on a line unless escaped as '\\;'."""
    out = []
    i = 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out).strip()


_HEADER = re.compile(r"^\[([^\]]+)\](?:\(([^)]*)\))?$")


def parse_asterisk(text: str) -> list[Section]:
    """Sections in file order (a name may repeat, e.g. an endpoint, auth and aor all called 1001)."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("#"):
            raise AssertionError(f"line {number}: #include/#exec not expected in these files: {raw!r}")
        header = _HEADER.match(line)
        if header:
            flags = [f.strip() for f in (header.group(2) or "").split(",") if f.strip()]
            sections.append(Section(header.group(1), "!" in flags, [f for f in flags if f != "!"]))
            continue
        if not sections:
            raise AssertionError(f"line {number}: option before any [section]: {raw!r}")
        key, sep, value = line.partition("=")
        if not sep:
            raise AssertionError(f"line {number}: not 'key = value': {raw!r}")
        value = value[1:] if value.startswith(">") else value  # "key => value" is the same thing
        sections[-1].options.append((key.strip(), value.strip()))
    return sections


def resolve_templates(sections: list[Section]) -> list[tuple[str, dict[str, str]]]:
    """The concrete (non-template) sections with their templates' options merged in."""
    templates = {s.name: s for s in sections if s.is_template}

    def options_of(section: Section, seen: tuple[str, ...] = ()) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name in section.templates:
            assert name in templates, f"[{section.name}] uses template ({name}), which is not defined"
            assert name not in seen, f"template loop through ({name})"
            merged.update(options_of(templates[name], (*seen, name)))
        for key, value in section.options:
            merged[key] = value
        return merged

    return [(s.name, options_of(s)) for s in sections if not s.is_template]


class Pjsip:
    def __init__(self, text: str) -> None:
        self.objects: dict[tuple[str, str], dict[str, str]] = {}
        for name, options in resolve_templates(parse_asterisk(text)):
            kind = options.get("type")
            assert kind, f"[{name}] has no type="
            assert (kind, name) not in self.objects, f"[{name}] type={kind} defined twice"
            self.objects[(kind, name)] = options

    def get(self, kind: str, name: str) -> dict[str, str]:
        assert (kind, name) in self.objects, f"pjsip.conf has no [{name}] with type={kind}"
        return self.objects[(kind, name)]

    def of_type(self, kind: str) -> dict[str, dict[str, str]]:
        return {name: options for (k, name), options in self.objects.items() if k == kind}


@dataclass
class Step:
    priority: str
    app: str
    args: str


class Dialplan:
    """Contexts of extensions.conf: exten => EXT,PRIORITY,App(args) and same => n,App(args)."""

    def __init__(self, text: str) -> None:
        self.contexts: dict[str, dict[str, list[Step]]] = {}
        for section in parse_asterisk(text):
            if section.name in ("general", "globals"):
                continue
            context = self.contexts.setdefault(section.name, {})
            current: str | None = None
            for key, value in section.options:
                if key == "exten":
                    current, rest = value.split(",", 1)
                    current = current.strip()
                elif key == "same":
                    assert current is not None, f"[{section.name}] 'same =>' before any 'exten =>'"
                    rest = value
                elif key == "include":
                    raise AssertionError("include => not expected: the checks follow one context")
                else:
                    raise AssertionError(f"[{section.name}] unexpected {key} => {value}")
                priority, app = rest.split(",", 1)
                match = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", app)
                name, args = (match.group(1), match.group(2)) if match else (app.strip(), "")
                context.setdefault(current, []).append(Step(priority.strip(), name, args))

    def find(self, context: str, number: str) -> tuple[str, list[Step]] | None:
        """The extension in CONTEXT that NUMBER reaches (exact names win over patterns)."""
        assert context in self.contexts, f"extensions.conf has no context [{context}]"
        extensions = self.contexts[context]
        if number in extensions:
            return number, extensions[number]
        for exten, steps in extensions.items():
            if exten.startswith("_") and re.fullmatch(pattern_regex(exten), number):
                return exten, steps
        return None

    def dial_targets(self, context: str, number: str) -> list[tuple[str, str | None]]:
        """(endpoint, user) for every PJSIP channel the extension for NUMBER dials."""
        found = self.find(context, number)
        assert found, f"[{context}] has no extension for {number}"
        exten, steps = found
        assert steps[0].priority == "1", f"[{context}] {exten} does not start at priority 1"
        targets = []
        for step in steps:
            if step.app.lower() != "dial":
                continue
            channels = step.args.split(",", 1)[0].replace("${EXTEN}", number)
            for channel in channels.split("&"):
                tech, _, resource = channel.partition("/")
                assert tech == "PJSIP", f"[{context}] {exten} dials {channel}, not a PJSIP channel"
                user, at, endpoint = resource.partition("@")
                targets.append((endpoint, user) if at else (user, None))
        return targets


def pattern_regex(pattern: str) -> str:
    """Asterisk extension pattern (_1XXX, _NXX., _[1-5]!) as a Python regular expression."""
    out = []
    body = pattern[1:]
    i = 0
    while i < len(body):
        c = body[i]
        if c in "xX":
            out.append("[0-9]")
        elif c in "zZ":
            out.append("[1-9]")
        elif c in "nN":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            end = body.index("]", i)
            out.append("[" + body[i + 1 : end] + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# -- the compose file (PyYAML is not a dependency: a reader for the shapes it uses) --------------


def parse_simple_yaml(text: str) -> dict:
    """Block mappings, block lists of scalars, plain and quoted scalars, comments. Nothing else."""
    lines = []
    for raw in text.splitlines():
        stripped = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip(" ")), stripped.strip()))

    def scalar(text: str) -> str:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1]
        return text

    def block(start: int, indent: int) -> tuple[object, int]:
        if lines[start][1].startswith("- "):
            items = []
            i = start
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(scalar(lines[i][1][2:].strip()))
                i += 1
            return items, i
        mapping: dict[str, object] = {}
        i = start
        while i < len(lines) and lines[i][0] == indent:
            key, sep, value = lines[i][1].partition(":")
            assert sep, f"not 'key: value': {lines[i][1]!r}"
            value = value.strip()
            if value:
                mapping[key.strip()] = scalar(value)
                i += 1
            else:
                assert i + 1 < len(lines) and lines[i + 1][0] > indent, f"{key}: has no value"
                mapping[key.strip()], i = block(i + 1, lines[i + 1][0])
        assert i == len(lines) or lines[i][0] < indent, f"bad indentation at {lines[i][1]!r}"
        return mapping, i

    result, end = block(0, 0)
    assert end == len(lines) and isinstance(result, dict)
    return result


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pjsip() -> Pjsip:
    return Pjsip((DEPLOY / "pjsip.conf").read_text())


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return Dialplan((DEPLOY / "extensions.conf").read_text())


@pytest.fixture(scope="module")
def bridge() -> dict:
    return tomllib.loads((DEPLOY / "sipbridge.toml").read_text())


@pytest.fixture(scope="module")
def provider(bridge: dict) -> dict:
    assert "asterisk" in bridge.get("providers", {}), "sipbridge.toml has no [providers.asterisk]"
    return bridge["providers"]["asterisk"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return parse_simple_yaml((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def rtp_conf() -> dict[str, str]:
    return dict(resolve_templates(parse_asterisk((DEPLOY / "rtp.conf").read_text())))["general"]


def host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    return (host.strip("[]"), int(port)) if sep else (text, default_port)


def port_range(text: str) -> range:
    low, high = (int(p) for p in text.split("-"))
    assert low <= high, text
    return range(low, high + 1)


def sip_uri_host_port(uri: str) -> tuple[str, int]:
    match = re.fullmatch(r"sips?:(?:[^@]+@)?(\[[^\]]+\]|[^:;>]+)(?::(\d+))?(?:;.*)?", uri)
    assert match, f"not a SIP URI: {uri}"
    return match.group(1).strip("[]"), int(match.group(2) or 5060)


def bridge_endpoint_name(pjsip: Pjsip, provider: dict) -> str:
    """The endpoint whose inbound auth carries the bridge's username."""
    names = [
        name
        for name, endpoint in pjsip.of_type("endpoint").items()
        if any(
            pjsip.get("auth", a.strip()).get("username") == provider["username"]
            for a in endpoint.get("auth", "").split(",")
            if a.strip()
        )
    ]
    assert len(names) == 1, f"want one endpoint authenticating user {provider['username']!r}, got {names}"
    return names[0]


# -- the parsers themselves ---------------------------------------------------------------------


def test_asterisk_reader_handles_templates_comments_and_repeated_names():
    text = """
[tpl](!)
type = endpoint ; a comment
context = a\\;b
[tpl2](!,tpl)
allow => ulaw
[x](tpl2)
context = mine
[x]
type = aor
"""
    objects = Pjsip(text).objects
    assert objects[("endpoint", "x")] == {"type": "endpoint", "context": "mine", "allow": "ulaw"}
    assert objects[("aor", "x")] == {"type": "aor"}
    assert ("endpoint", "tpl") not in objects


def test_extension_patterns():
    assert re.fullmatch(pattern_regex("_1XXX"), "1001")
    assert not re.fullmatch(pattern_regex("_1XXX"), "10011")
    assert not re.fullmatch(pattern_regex("_1XXX"), "+4420")
    assert re.fullmatch(pattern_regex("_NXX."), "2125550100")
    assert re.fullmatch(pattern_regex("_[1-5]!"), "3")


def test_yaml_reader():
    doc = parse_simple_yaml('a:\n  b: "x" # c\n  l:\n    - ./p:/q:ro\nz: 1\n')
    assert doc == {"a": {"b": "x", "l": ["./p:/q:ro"]}, "z": "1"}


# -- pjsip.conf on its own ----------------------------------------------------------------------


def test_pjsip_objects_have_known_types_and_references_resolve(pjsip: Pjsip):
    kinds = {kind for kind, _ in pjsip.objects}
    assert kinds <= {"global", "system", "transport", "endpoint", "auth", "aor", "identify"}
    for name, endpoint in pjsip.of_type("endpoint").items():
        for auth in filter(None, (a.strip() for a in endpoint.get("auth", "").split(","))):
            pjsip.get("auth", auth)
        aors = [a.strip() for a in endpoint.get("aors", "").split(",") if a.strip()]
        assert aors, f"endpoint {name} has no aors"
        for aor in aors:
            pjsip.get("aor", aor)
        assert endpoint.get("context"), f"endpoint {name} has no context"
        assert endpoint.get("disallow") == "all" and "ulaw" in endpoint.get("allow", ""), name
        assert endpoint.get("direct_media") == "no", f"{name}: media must go through Asterisk"
    for identify in pjsip.of_type("identify").values():
        pjsip.get("endpoint", identify["endpoint"])
        for match in identify["match"].split(","):
            ipaddress.ip_network(match.strip(), strict=False)
    for name, auth in pjsip.of_type("auth").items():
        assert auth.get("auth_type", "userpass") == "userpass" and auth.get("username"), name
        assert "change-me" in auth.get("password", ""), f"auth {name}: ship passwords marked change-me"


def test_extension_1001_can_register(pjsip: Pjsip):
    endpoint = pjsip.get("endpoint", "1001")
    auth = pjsip.get("auth", endpoint["auth"])
    assert auth["username"] == "1001" and auth["password"]
    aor = pjsip.get("aor", endpoint["aors"])
    assert int(aor.get("max_contacts", "0")) >= 1, "aor 1001 must accept a registration"
    assert "contact" not in aor, "1001 is a registering phone, not a static contact"


def test_transports_bind_all_on_one_port(pjsip: Pjsip):
    transports = pjsip.of_type("transport")
    assert {t["protocol"] for t in transports.values()} >= {"udp"}
    for name, transport in transports.items():
        host, _ = host_port(transport["bind"])
        assert host in ("0.0.0.0", "::"), f"{name}: bind to every address (phones and loopback)"


# -- pjsip.conf against sipbridge.toml ----------------------------------------------------------


def test_bridge_endpoint_credentials_match(pjsip: Pjsip, provider: dict):
    assert provider["type"] == "asterisk"
    name = bridge_endpoint_name(pjsip, provider)
    endpoint = pjsip.get("endpoint", name)
    auths = [pjsip.get("auth", a.strip()) for a in endpoint["auth"].split(",")]
    assert any(a["password"] == provider["password"] for a in auths), "password differs from pjsip.conf"
    assert provider.get("register", False) is False, "Asterisk sends to the aor contact: no REGISTER"
    # Identified by name (From user = caller_id) or by address (identify section).
    identifies = [i for i in pjsip.of_type("identify").values() if i["endpoint"] == name]
    assert provider.get("caller_id") == name or identifies


def test_bridge_sends_to_an_asterisk_transport(pjsip: Pjsip, provider: dict):
    host, port = host_port(provider["address"])
    transport = provider.get("transport", "udp")
    bound = [host_port(t["bind"]) for t in pjsip.of_type("transport").values() if t["protocol"] == transport]
    assert port in [p for _, p in bound], f"no {transport} transport on port {port}"
    assert ipaddress.ip_address(host).is_loopback, "Asterisk runs on the bridge's host (host networking)"


def test_bridge_source_address_is_identified(pjsip: Pjsip, bridge: dict, provider: dict):
    name = bridge_endpoint_name(pjsip, provider)
    source, _ = host_port(bridge["sip_listen"])
    networks = [
        ipaddress.ip_network(m.strip(), strict=False)
        for i in pjsip.of_type("identify").values()
        if i["endpoint"] == name
        for m in i["match"].split(",")
    ]
    assert any(ipaddress.ip_address(source) in n for n in networks), f"{source} not in identify of {name}"


def test_asterisk_is_in_the_bridge_inbound_allow_list(provider: dict):
    host, _ = host_port(provider["address"])
    cidrs = [ipaddress.ip_network(c) for c in provider["inbound_cidrs"]]
    assert any(ipaddress.ip_address(host) in c for c in cidrs)
    assert all(c.num_addresses <= 256 for c in cidrs), "keep the inbound allow-list narrow"


def test_phone_dials_9000_to_reach_the_bridge(pjsip: Pjsip, dialplan: Dialplan, bridge: dict, provider: dict):
    """1001's context has 9000, which dials the bridge endpoint, whose aor is where the bridge listens."""
    bridge_name = bridge_endpoint_name(pjsip, provider)
    context = pjsip.get("endpoint", "1001")["context"]
    targets = dialplan.dial_targets(context, "9000")
    assert [endpoint for endpoint, _ in targets] == [bridge_name]
    aor = pjsip.get("aor", pjsip.get("endpoint", bridge_name)["aors"])
    assert sip_uri_host_port(aor["contact"]) == host_port(bridge["sip_listen"]), (
        "the [sipbridge] aor contact must be the bridge's sip_listen"
    )


def test_phones_reach_each_other(pjsip: Pjsip, dialplan: Dialplan):
    context = pjsip.get("endpoint", "1001")["context"]
    assert dialplan.dial_targets(context, "1002") == [("1002", None)]
    pjsip.get("endpoint", "1002")


def test_bridge_context_dials_extensions_and_nothing_else(pjsip: Pjsip, dialplan: Dialplan, provider: dict):
    context = pjsip.get("endpoint", bridge_endpoint_name(pjsip, provider))["context"]
    assert dialplan.dial_targets(context, "1001") == [("1001", None)]
    pjsip.get("endpoint", "1001")
    for number in ("9000", "+447911123456", "447911123456", "900", "10011", "0"):
        assert dialplan.find(context, number) is None, f"the bridge's context must not route {number}"


def test_destinations_allow_extensions_only(provider: dict):
    patterns = [re.compile(p) for p in provider["destinations"]]
    assert patterns, "an empty allow-list would dial nothing (or, worse, be read as 'anything')"

    def allowed(number: str) -> bool:
        return any(p.search(number) for p in patterns)

    assert allowed("1001") and allowed("1999")
    for number in ("+447911123456", "447911123456", "+19005550100", "9000", "10011", "1001x", "", "*1001"):
        assert not allowed(number), number
    assert provider.get("allow_premium", False) is False


def test_destinations_through_the_bridge_policy(provider: dict):
    """The same, through the bridge's own outbound policy."""
    check = policy.DestinationPolicy(tuple(provider["destinations"]), provider.get("allow_premium", False))
    assert check.check("1001") == "1001"
    for number in ("+447911123456", "+19005550100", "9000"):
        with pytest.raises(policy.Refused):
            check.check(number)


# -- ports: compose, pjsip.conf, rtp.conf, sipbridge.toml ----------------------------------------


def test_compose_runs_pinned_asterisk_20_on_host_network(compose: dict):
    service = compose["services"]["asterisk"]
    image, _, tag = service["image"].rpartition(":")
    assert image == "andrius/asterisk"
    assert re.fullmatch(r"20\.\d+\.\d+(_debian-\w+)?", tag), f"pin an Asterisk 20 version, not {tag!r}"
    assert service["network_mode"] == "host"
    assert "ports" not in service, "host networking publishes nothing: ports would be ignored"
    mounts = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        assert mode == ["ro"], f"mount config read-only: {volume}"
        assert (DEPLOY / source).is_file(), f"{source} is mounted but not in deploy/asterisk"
        mounts[Path(source).name] = target
    for name in ("pjsip.conf", "extensions.conf", "rtp.conf", "modules.conf"):
        assert mounts.get(name) == f"/etc/asterisk/{name}", f"{name} is not mounted over the image's"


def test_compose_ports_match_pjsip_transports(compose: dict, pjsip: Pjsip):
    declared = int(compose["x-host-ports"]["sip"])
    bound = {host_port(t["bind"])[1] for t in pjsip.of_type("transport").values()}
    assert bound == {declared}


def test_compose_rtp_range_matches_rtp_conf(compose: dict, rtp_conf: dict[str, str]):
    declared = port_range(compose["x-host-ports"]["rtp"])
    assert declared == range(int(rtp_conf["rtpstart"]), int(rtp_conf["rtpend"]) + 1)


def test_bridge_ports_do_not_collide_with_asterisk(bridge: dict, rtp_conf: dict[str, str], pjsip: Pjsip):
    asterisk_rtp = range(int(rtp_conf["rtpstart"]), int(rtp_conf["rtpend"]) + 1)
    bridge_rtp = port_range(bridge["rtp_ports"])
    assert not set(asterisk_rtp) & set(bridge_rtp), "RTP ranges overlap on the shared host"
    _, sip_port = host_port(bridge["sip_listen"])
    asterisk_ports = {host_port(t["bind"])[1] for t in pjsip.of_type("transport").values()}
    assert sip_port not in asterisk_ports, "the bridge's SIP port is Asterisk's"
    assert sip_port not in asterisk_rtp and sip_port not in bridge_rtp
    assert host_port(bridge["api"]["listen"])[1] not in asterisk_rtp


def test_modules_keep_chan_sip_off_5060():
    modules = dict(resolve_templates(parse_asterisk((DEPLOY / "modules.conf").read_text())))["modules"]
    text = (DEPLOY / "modules.conf").read_text()
    assert modules["autoload"] == "yes"
    assert re.search(r"^noload\s*=>?\s*chan_sip\.so", text, re.M)


def test_api_needs_a_key(bridge: dict):
    keys = bridge["api"]["keys"]
    assert keys and all(len(k) >= 16 and "change-me" in k for k in keys)
    assert ipaddress.ip_address(host_port(bridge["api"]["listen"])[0]).is_loopback


def test_bridge_config_loads():
    """The shipped sipbridge.toml is accepted by the bridge's own config loader."""
    loaded = config.load_config(DEPLOY / "sipbridge.toml", env={})
    (asterisk,) = [p for p in loaded.providers if p.name == "asterisk"]
    assert asterisk.type == "asterisk" and asterisk.username == "sipbridge"
    assert str(loaded.sip_listen) == "127.0.0.1:5070"


# -- Twilio data --------------------------------------------------------------------------------


def test_twilio_signalling_cidrs_are_valid_disjoint_ipv4_blocks():
    networks = [ipaddress.ip_network(c, strict=True) for c in twilio_ranges.TWILIO_SIGNALLING_CIDRS]
    assert len(networks) == 8 and len(set(networks)) == 8
    assert all(n.version == 4 and n.prefixlen == 30 and n.is_global for n in networks)
    for i, a in enumerate(networks):
        for b in networks[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert ipaddress.ip_network("54.172.60.0/30") in networks  # North America, Virginia


def test_twilio_media_block_is_separate_from_signalling():
    media = [ipaddress.ip_network(c, strict=True) for c in twilio_ranges.TWILIO_MEDIA_CIDRS]
    assert media == [ipaddress.ip_network("168.86.128.0/18")]
    for cidr in twilio_ranges.TWILIO_SIGNALLING_CIDRS:
        assert not media[0].overlaps(ipaddress.ip_network(cidr))
    low, high = twilio_ranges.TWILIO_MEDIA_PORTS
    assert 1024 <= low < high <= 65535


def test_twilio_constants():
    assert twilio_ranges.TWILIO_TLS_PORT == 5061
    assert twilio_ranges.TWILIO_SIGNALLING_PORT == 5060
    assert twilio_ranges.TWILIO_TERMINATION_HOST_SUFFIX == ".pstn.twilio.com"
    assert "mytrunk.pstn.twilio.com".endswith(twilio_ranges.TWILIO_TERMINATION_HOST_SUFFIX)
