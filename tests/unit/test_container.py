"""The container files, checked as data: no Docker engine runs here, so nothing is built or started.

The Dockerfile's key properties (exact base tag, non-root numeric user, liveness healthcheck, the
gunicorn entry point, dependencies pinned by constraints.txt) and docker-compose.yml's (the four
services, one build for the connector and its setup job, health-gated ordering, secrets only from
.env, connector variables the code actually reads, equal stack versions). hadolint lints the Dockerfile
as a step of scripts/test, next to ruff.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from connector.cli import main as cli_main
from connector.kibana.client import KibanaConnection
from connector.settings import Settings
from scripts import es_node

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
CONSTRAINTS = ROOT / "constraints.txt"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIRED_SERVICES = {"elasticsearch", "kibana", "connector", "setup"}
# Names whose values are secrets; "...SSL_KEY" settings are file paths and do not match.
SECRET_NAME = re.compile(r"PASSWORD|TOKENS?$|API_KEY|ENCRYPTIONKEY|SECRET", re.IGNORECASE)
# Compose interpolation; "$${...}" is an escaped, literal "${...}" for the container's shell.
ENV_REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?P<rest>[^}]*)\}")
EXACT_TAG = re.compile(r"^(?P<repo>[a-z0-9./_-]+):(?P<tag>\d+\.\d+\.\d+[a-z0-9.-]*)$")


# ------------------------------------------------------------------------------------------ Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (fails the test if it is shell form)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} must be in exec form: {self.arguments}"
        return value


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments and blank lines dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return [Instruction(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, "the first instruction must be FROM"
        result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[list[Instruction]]:
    return stages(dockerfile_instructions(DOCKERFILE.read_text()))


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def test_every_base_image_is_pinned_to_the_same_exact_version(dockerfile):
    """Each FROM names an exact x.y.z tag (never latest or a moving x.y), the same in every stage, so the
    virtualenv built in the first stage runs on the interpreter it was built for."""
    images = [stage[0].arguments.split()[0] for stage in dockerfile]
    assert len(images) >= 2, "a multi-stage build: the final image has no build tools"
    for image in images:
        assert EXACT_TAG.match(image), f"{image} is not pinned to an exact version tag"
    assert len(set(images)) == 1, images


def test_final_stage_runs_as_a_non_root_numeric_user(dockerfile):
    """USER is numeric (Kubernetes runAsNonRoot can verify it) and not 0, in user:group form."""
    user = _only(dockerfile[-1], "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user


def test_healthcheck_probes_liveness_on_the_bound_port(dockerfile):
    """HEALTHCHECK runs an exec-form probe of /healthz (no credentials, no Elasticsearch needed) on the
    port of CONNECTOR_BIND, the variable the image sets for gunicorn."""
    healthcheck = _only(dockerfile[-1], "HEALTHCHECK")
    options, _, command = healthcheck.arguments.partition("CMD ")
    assert "--timeout=" in options and "--interval=" in options
    probe = json.loads(command)
    assert probe[0] == "python" and "/healthz" in probe[-1] and "CONNECTOR_BIND" in probe[-1]
    env = " ".join(instruction.arguments for instruction in dockerfile[-1] if instruction.keyword == "ENV")
    assert "CONNECTOR_BIND=0.0.0.0:8080" in env
    assert _only(dockerfile[-1], "EXPOSE").arguments == "8080"


def test_entry_point_is_connector_serve_which_execs_gunicorn(dockerfile):
    """ENTRYPOINT ["connector"] CMD ["serve"]: the console script of pyproject.toml, whose serve command
    checks the settings and then execs gunicorn (so gunicorn is PID 1 and gets STOPSIGNAL)."""
    assert _only(dockerfile[-1], "ENTRYPOINT").exec_form() == ["connector"]
    assert _only(dockerfile[-1], "CMD").exec_form() == ["serve"]
    assert _only(dockerfile[-1], "STOPSIGNAL").arguments == "SIGTERM"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["connector"] == "connector.cli:main"
    assert "serve" in cli_main.commands  # type: ignore[attr-defined]
    serve_source = (ROOT / "connector" / "cli" / "commands.py").read_text()
    assert '"-m", "gunicorn"' in serve_source and "os.execve(" in serve_source


def test_dependencies_install_through_constraints_in_the_build_stage_only(dockerfile):
    """The build stage installs the package with -c constraints.txt (and the package's assets); the final
    stage installs nothing and copies only the virtualenv, so it carries no pip cache or build tools."""
    build, final = dockerfile[0], dockerfile[-1]
    installs = [i.arguments for i in build if i.keyword == "RUN" and "pip install" in i.arguments]
    assert len(installs) == 1 and "-c constraints.txt" in installs[0], installs
    copies = " ".join(i.arguments for i in build if i.keyword == "COPY")
    assert "constraints.txt" in copies and "kibana_saved_objects" in copies  # connector.assets
    assert not any("pip install" in i.arguments for i in final if i.keyword == "RUN")
    assert any(i.keyword == "COPY" and i.arguments.startswith("--from=build /opt/venv") for i in final)


def test_no_secret_is_baked_into_the_image(dockerfile):
    """ENV and ARG name no password, token or key: those come from the environment at run time."""
    for stage in dockerfile:
        for instruction in stage:
            if instruction.keyword in ("ENV", "ARG"):
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments)
                assert not [name for name in names if SECRET_NAME.search(name)], instruction


def test_build_context_excludes_local_secrets_and_state():
    """.dockerignore starts from "exclude everything" and re-includes only what the Dockerfile copies."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = {pattern.removeprefix("!").rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert not {".env", ".venv", ".git", "bench"} & included
    copied = set()
    for instruction in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            copied.update(part.rstrip("/") for part in instruction.arguments.split()[:-1])
    assert copied <= included, copied - included


# ------------------------------------------------------------------------------------------ constraints


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator and version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def runtime_closure() -> Iterator[str]:
    """Every distribution the package's runtime dependencies pull in, from the installed metadata."""
    environment = default_environment()
    pending = [(Requirement(text), ("",)) for text in distribution("rare-child-connector").requires or []]
    seen: set[str] = set()
    while pending:
        requirement, extras = pending.pop()
        marker_env = [{**environment, "extra": extra} for extra in extras]
        if requirement.marker and not any(requirement.marker.evaluate(env) for env in marker_env):
            continue
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        yield name
        try:
            requires = distribution(requirement.name).requires or []
        except PackageNotFoundError:
            pytest.fail(f"{requirement} is required but not installed")
        pending.extend((Requirement(text), tuple(requirement.extras) or ("",)) for text in requires)


def test_constraints_pin_every_runtime_dependency_exactly():
    """constraints.txt pins each runtime distribution (direct and transitive) with ==, so the image
    resolves nothing on its own; a dependency added to pyproject.toml without a pin fails here."""
    pins = constraint_pins()
    missing = set(runtime_closure()) - set(pins)
    assert not missing, f"add to constraints.txt: {sorted(missing)}"


def test_constraints_satisfy_pyproject():
    """Each pin lies within pyproject.toml's range for that dependency (pip would refuse otherwise)."""
    pins = constraint_pins()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in declared:
        requirement = Requirement(text)
        pinned = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), f"{pinned} outside {requirement}"


# ------------------------------------------------------------------------------------------ compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(name): str(value) for name, value in environment.items()}


def _string_constants(path: Path, pattern: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(pattern, node.value)
    }


def connector_variables() -> set[str]:
    """The CONNECTOR_* names the code reads: Settings.from_env and gunicorn's config file."""
    return _string_constants(ROOT / "connector" / "settings.py", r"CONNECTOR_[A-Z_]+") | _string_constants(
        ROOT / "connector" / "service" / "gunicorn_conf.py", r"CONNECTOR_[A-Z_]+"
    )


def test_the_four_services_exist_and_the_connector_and_setup_share_one_build(compose):
    """elasticsearch, kibana, connector and the one-shot setup; setup runs the image the connector runs."""
    services = compose["services"]
    assert set(services) >= REQUIRED_SERVICES
    connector, setup = services["connector"], services["setup"]
    assert connector["build"] == setup["build"] == "."
    assert connector["image"] == setup["image"]
    assert setup.get("restart", "no") == "no"


def test_setup_runs_template_and_kibana_after_healthy_elasticsearch_and_kibana(compose):
    """setup waits for both healthchecks, then installs the index template and the saved objects."""
    services = compose["services"]
    depends = services["setup"]["depends_on"]
    assert depends["elasticsearch"]["condition"] == "service_healthy"
    assert depends["kibana"]["condition"] == "service_healthy"
    for name in ("elasticsearch", "kibana"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a healthcheck"
    command = " ".join(services["setup"]["command"])
    assert "connector setup template" in command and "connector setup kibana" in command
    setup_template = cli_main.commands["setup"].commands  # type: ignore[attr-defined]
    assert {"template", "kibana"} <= set(setup_template)
    assert services["connector"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_secrets_come_only_from_the_env_file(compose):
    """Every secret-named variable is a required ${VAR} reference (no default, no literal), each such
    variable is documented in .env.example, and no example value made it into the compose file."""
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for name, service in compose["services"].items():
        for variable, value in _environment(service).items():
            if SECRET_NAME.search(variable):
                reference = ENV_REFERENCE.fullmatch(value)
                assert reference, f"{name}.{variable} must be a ${{VAR}} from .env, not a literal"
                assert not reference["rest"].startswith((":-", "-")), f"{name}.{variable} has a default"
    text = COMPOSE.read_text()
    referenced = {match["name"] for match in ENV_REFERENCE.finditer(text)}
    assert referenced <= set(example), f"document in .env.example: {sorted(referenced - set(example))}"
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value not in text, f"the example value of {name} appears in docker-compose.yml"


def test_connector_environment_is_what_the_code_reads(compose):
    """Every CONNECTOR_* variable given to the connector or setup is read by the code (a renamed setting
    fails here), and the connector's environment builds valid Settings."""
    known = connector_variables()
    kibana_known = _string_constants(ROOT / "connector" / "kibana" / "client.py", r"KIBANA_[A-Z_]+") | (
        _string_constants(ROOT / "connector" / "cli" / "options.py", r"KIBANA_[A-Z_]+")
    )
    for name in ("connector", "setup"):
        environment = _environment(compose["services"][name])
        unknown = {v for v in environment if v.startswith("CONNECTOR_")} - known
        assert not unknown, f"{name}: variables the code does not read: {sorted(unknown)}"
        unknown_kibana = {v for v in environment if v.startswith("KIBANA_")} - kibana_known
        assert not unknown_kibana, f"{name}: {sorted(unknown_kibana)}"
        assert not {v for v in environment if not v.startswith(("CONNECTOR_", "KIBANA_"))}


def test_connector_environment_builds_valid_settings(compose, tmp_path):
    """Settings.from_env accepts the connector's environment (placeholders from .env.example, the CA
    path mapped to a local file): compose cannot ship a value the service would refuse."""
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    environment = {
        name: ENV_REFERENCE.sub(lambda match: example[match["name"]], value)
        for name, value in _environment(compose["services"]["connector"]).items()
    }
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    environment["CONNECTOR_ES_CA_CERTS"] = str(ca)
    settings = Settings.from_env(environment)
    assert all(url.startswith("https://") for url in settings.es_urls)
    assert settings.es_username == "rare-child-connector" and settings.es_api_key is None
    assert settings.has_service_credentials
    setup = {
        name: ENV_REFERENCE.sub(lambda match: example[match["name"]], value)
        for name, value in _environment(compose["services"]["setup"]).items()
    }
    kibana = KibanaConnection.from_env(setup, url=setup["KIBANA_URL"])
    assert kibana.url == "http://kibana:5601"


def test_connector_user_gets_the_shipped_role_filled_with_its_own_indices(compose):
    """The `certs` job creates the connector's role from kibana_saved_objects/elasticsearch-role.json
    (not a copy that could drift), fills its placeholders from the same index variables the connector
    gets, and the connector logs in as that user, not as elastic."""
    services = compose["services"]
    certs, connector = services["certs"], services["connector"]
    role_file = ROOT / "kibana_saved_objects" / "elasticsearch-role.json"
    role = json.loads(role_file.read_text())
    assert {"${SOURCE_INDICES}", "${RESULTS_INDEX}", "${CHECKPOINT_INDEX}", "${SUMMARY_INDEX}"} == {
        name for item in role["indices"] for name in item["names"]
    }
    mounted = {volume.split(":")[1] for volume in certs["volumes"] if volume.startswith("./")}
    assert any(
        volume.startswith("./kibana_saved_objects/elasticsearch-role.json:") for volume in certs["volumes"]
    )
    script = "\n".join(certs["command"])
    assert any(path in script for path in mounted)
    assert "$${SOURCE_INDICES}" in script and "$${RESULTS_INDEX}" in script  # $$: literal for compose
    assert "$${CHECKPOINT_INDEX}" in script and "$${SUMMARY_INDEX}" in script
    certs_env, connector_env = _environment(certs), _environment(connector)
    for variable in (
        "CONNECTOR_ALLOWED_INDICES",
        "CONNECTOR_RESULTS_INDEX",
        "CONNECTOR_CHECKPOINT_INDEX",
        "CONNECTOR_SUMMARY_INDEX",
    ):
        assert certs_env[variable] == connector_env[variable], variable
    user = connector_env["CONNECTOR_ES_USERNAME"]
    assert user != "elastic" and f"/_security/user/{user} " in script
    assert f'\\"roles\\": [\\"{user}\\"]' in script and f"/_security/role/{user} " in script


def test_stack_images_share_the_version_the_tests_run_against(compose):
    """Elasticsearch and Kibana use one exact version, the test suite's (scripts/es_node.py)."""
    services = compose["services"]
    versions = {
        name: services[name]["image"].rsplit(":", 1)[1] for name in ("certs", "elasticsearch", "kibana")
    }
    assert services["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert services["kibana"]["image"].startswith("docker.elastic.co/kibana/kibana:")
    assert set(versions.values()) == {es_node.DEFAULT_VERSION}, versions


def test_published_ports_are_loopback_only(compose):
    """Nothing is published on all interfaces: a reverse proxy with TLS decides what is exposed."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_elasticsearch_runs_with_security_and_tls(compose):
    """Security, HTTP TLS and transport TLS are on; clients verify with the generated CA."""
    environment = _environment(compose["services"]["elasticsearch"])
    for setting in (
        "xpack.security.enabled",
        "xpack.security.http.ssl.enabled",
        "xpack.security.transport.ssl.enabled",
    ):
        assert environment[setting] == "true", setting
    assert _environment(compose["services"]["connector"])["CONNECTOR_ES_URL"].startswith("https://")
    assert "CONNECTOR_ES_VERIFY_CERTS" not in _environment(compose["services"]["connector"])
