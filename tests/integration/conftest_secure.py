"""Fixtures for a REAL Elasticsearch node with security and TLS on, and the service talking to it.

Imported by ``test_security_tls.py``. The node (``scripts/es_node.py``, ``secure=True``) has a throw-away
CA and a superuser for these fixtures only. The connector gets its own API key, created by that superuser
exactly as docs/service.md says (``POST /_security/api_key`` with ``role_descriptors``); the key's role is the
reviewed asset ``kibana_saved_objects/elasticsearch-role.json`` with this session's index names filled in,
so the documented role, the shipped asset and what is tested cannot drift apart. The service gets the
key's ``encoded`` value as ``CONNECTOR_ES_API_KEY``.

API keys live in the ``.security`` index, whose mapping needs analysis components the integ-test
distribution lacks; es_node.py gives secure nodes a small test plugin providing them. The documented other
option, a user with the role (``CONNECTOR_ES_USERNAME``/``PASSWORD``), is covered by a file-realm user
(:func:`connector_user`), created only for the one test that needs it.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest_service import RunningService, ServiceCredentials, running_service
from elasticsearch import Elasticsearch
from es_data import create_sample_index

from connector.scheduling import ASSETS_DIR, fill_placeholders, load_asset, placeholders_left
from scripts import es_node

ROLE_ASSET = ASSETS_DIR / "elasticsearch-role.json"
ROLE_NAME = "rare-child-connector"
API_KEY_NAME = "rare-child-connector"
CONNECTOR_USER = "rcp-connector"


@dataclass(frozen=True)
class ApiKey:
    """What ``POST /_security/api_key`` answers: the id is public (it shows in refusals), the rest secret."""

    id: str
    name: str
    secret: str = field(repr=False)
    encoded: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        """The secret, the ``id:secret`` pair and its base64 (the ``encoded`` value, the header's)."""
        return (self.secret, f"{self.id}:{self.secret}", self.encoded)


@dataclass(frozen=True)
class SecureIndices:
    """This session's index names: the role covers ``source_pattern`` and ``results``, not ``outside``."""

    prefix: str

    @property
    def source_pattern(self) -> str:
        return f"{self.prefix}src-*"

    @property
    def source(self) -> str:
        return f"{self.prefix}src-events"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}checkpoints"

    @property
    def summary(self) -> str:
        return f"{self.prefix}summary"

    @property
    def outside(self) -> str:
        return f"{self.prefix}other"


@dataclass(frozen=True)
class SecureCluster:
    """The secure node, an admin client for fixtures, and the connector's least-privilege API key."""

    node: es_node.RunningNode
    admin: Elasticsearch
    indices: SecureIndices
    role: dict[str, Any]
    api_key: ApiKey

    @property
    def security(self) -> es_node.Security:
        assert self.node.security is not None
        return self.node.security

    def connector_client(self) -> Elasticsearch:
        """A client logged in with the connector's API key (what the service gets)."""
        return Elasticsearch(
            self.node.url,
            api_key=self.api_key.encoded,
            ca_certs=str(self.security.ca_path),
            request_timeout=30,
        )

    def secrets(self) -> tuple[str, ...]:
        """Every secret that must never show up in the service's logs or answers."""
        security = self.security
        admin_basic = base64.b64encode(f"{security.admin_user}:{security.admin_password}".encode()).decode()
        return (*self.api_key.secrets(), security.admin_password, admin_basic)


@dataclass(frozen=True)
class ConnectorUser:
    """A file-realm user holding the same role: the documented username/password alternative."""

    name: str
    password: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        return (self.password, base64.b64encode(f"{self.name}:{self.password}".encode()).decode())


def connector_role(indices: SecureIndices) -> dict[str, Any]:
    """The shipped role asset with this session's source pattern, results and progress indices."""
    role = fill_placeholders(
        load_asset(ROLE_ASSET),
        {
            "SOURCE_INDICES": indices.source_pattern,
            "RESULTS_INDEX": indices.results,
            "CHECKPOINT_INDEX": indices.checkpoints,
            "SUMMARY_INDEX": indices.summary,
        },
        source=ROLE_ASSET,
    )
    assert placeholders_left(role) == []
    return role


def create_api_key(admin: Elasticsearch, role: dict[str, Any]) -> ApiKey:
    """``POST /_security/api_key`` as the admin, the role asset as its only role descriptor.

    A key with ``role_descriptors`` gets their intersection with its creator's privileges: the admin is a
    superuser, so the key gets exactly the role.
    """
    created = admin.security.create_api_key(name=API_KEY_NAME, role_descriptors={ROLE_NAME: role})
    key = ApiKey(created["id"], created["name"], created["api_key"], created["encoded"])
    assert base64.b64decode(key.encoded).decode() == f"{key.id}:{key.secret}"
    return key


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    """A secure node for the session, the sample in a source index, the connector's API key."""
    try:
        node = es_node.start_node(tmp_path_factory.mktemp("es-secure"), secure=True)
    except es_node.NodeError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"could not start the secure Elasticsearch node:\n{problem}", pytrace=False)
    try:
        assert node.security is not None
        admin = Elasticsearch(
            node.url,
            basic_auth=(node.security.admin_user, node.security.admin_password),
            ca_certs=str(node.security.ca_path),
            request_timeout=60,
        )
        indices = SecureIndices(f"rcp-sec-{uuid.uuid4().hex[:12]}-")
        create_sample_index(admin, indices.source, shards=1)
        create_sample_index(admin, indices.outside, shards=1)
        role = connector_role(indices)
        yield SecureCluster(node, admin, indices, role, create_api_key(admin, role))
        admin.close()
    finally:
        node.stop()


@pytest.fixture(scope="session")
def connector_user(secure_cluster: SecureCluster) -> ConnectorUser:
    """A file-realm user with the role asset (roles.yml), for the username/password configuration."""
    user = ConnectorUser(CONNECTOR_USER, secrets.token_urlsafe(18))
    secure_cluster.node.add_file_role(ROLE_NAME, secure_cluster.role)
    secure_cluster.node.add_file_user(user.name, user.password, [ROLE_NAME])
    return user


def _secure_environment(
    cluster: SecureCluster,
    workdir: Path,
    credentials: ServiceCredentials,
    *,
    with_ca: bool,
    user: ConnectorUser | None = None,
) -> dict[str, str]:
    if user is None:
        login = {"CONNECTOR_ES_API_KEY": cluster.api_key.encoded}
    else:
        login = {"CONNECTOR_ES_USERNAME": user.name, "CONNECTOR_ES_PASSWORD": user.password}
    environment = {
        "CONNECTOR_ES_URL": cluster.node.url,
        **login,
        "CONNECTOR_USE_CASES": str(workdir / "rare_child.ini"),
        # Wider than the role on purpose: what the service allows, Elasticsearch may still refuse.
        "CONNECTOR_ALLOWED_INDICES": f"{cluster.indices.prefix}*",
        "CONNECTOR_RESULTS_INDEX": cluster.indices.results,
        "CONNECTOR_CHECKPOINT_INDEX": cluster.indices.checkpoints,
        "CONNECTOR_SUMMARY_INDEX": cluster.indices.summary,
        # DEBUG: the client's own request logging is on too, and must not leak a secret either.
        "CONNECTOR_LOG_LEVEL": "DEBUG",
    }
    if with_ca:
        environment["CONNECTOR_ES_CA_CERTS"] = str(cluster.security.ca_path)
    return environment


@pytest.fixture(scope="session")
def secure_service(
    secure_cluster: SecureCluster, service_workdir: Path, service_credentials: ServiceCredentials
) -> Iterator[RunningService]:
    """Real gunicorn against the secure node: https, verified with the CA, the least-privilege API key."""
    environment = _secure_environment(secure_cluster, service_workdir, service_credentials, with_ca=True)
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        yield service


@pytest.fixture(scope="session")
def secure_service_without_ca(
    secure_cluster: SecureCluster, service_workdir: Path, service_credentials: ServiceCredentials
) -> Iterator[RunningService]:
    """The same service without CONNECTOR_ES_CA_CERTS: verification stays on and must fail."""
    environment = _secure_environment(secure_cluster, service_workdir, service_credentials, with_ca=False)
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        yield service


@pytest.fixture(scope="session")
def secure_user_service(
    secure_cluster: SecureCluster,
    connector_user: ConnectorUser,
    service_workdir: Path,
    service_credentials: ServiceCredentials,
) -> Iterator[RunningService]:
    """The service logged in as the file-realm user instead of the API key."""
    environment = _secure_environment(
        secure_cluster, service_workdir, service_credentials, with_ca=True, user=connector_user
    )
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        yield service
