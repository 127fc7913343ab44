#!/usr/bin/env python3
"""Fetch, start and stop real Elasticsearch nodes (one, or a small cluster) for tests, CI and benchmarks.

Why this exists: the connector's queries (composite/terms aggregations, bulk writes, PIT) must be checked
against a real node, not a fake. Elastic publishes a small "integ-test-zip" distribution (no bundled JDK,
only the core modules) on Maven Central; this script downloads it with ``mvn``, verifies a pinned SHA-512,
unpacks it once into a cache outside git, and runs throw-away nodes from it.

Standard library only: it runs before (and independently of) the package's own dependencies.

CLI::

    python scripts/es_node.py fetch   # also builds the test plugin secure nodes load (see below)
    python scripts/es_node.py start [--port N] [--workdir DIR]   # prints ES_URL=..., leaves the node running
    python scripts/es_node.py start --secure ...   # security + TLS: also prints ES_CA_CERTS, the admin user
                                                   # and the file holding its password (never the password)
    python scripts/es_node.py start --nodes 3 ...  # N nodes on loopback forming one cluster (security off);
                                                   # prints ES_URLS=url1,url2,url3 (and ES_URL, the first)
    python scripts/es_node.py stop --workdir DIR   # a node or a whole cluster

Environment: ``RCP_ES_VERSION`` (default :data:`DEFAULT_VERSION`; the pinned versions are the keys of
:data:`PINNED_SHA512`), ``RCP_ES_SHA512`` (required for a version without a pinned hash), ``RCP_ES_CACHE``
(default ``~/.cache/rare-child-connector/elasticsearch``), ``ES_JAVA_HOME`` (default: a JDK known to suit the
major version: 17 for 8.x, 21 or 25 for 9.x), ``RCP_ES_USER`` (the account used when running as root, default
``rcp-es``: Elasticsearch refuses to run as root).

Secure nodes also load a tiny test-only plugin, compiled here from ``scripts/es_test_plugin`` with the
JDK's ``javac`` against the distribution's own jars (:func:`ensure_test_plugin`): the integ-test zip lacks
the analysis-common module, without which the ``.security`` index (API keys, native users and roles)
cannot be created; the plugin provides just the three analysis components that index's mapping needs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_VERSION = "8.19.21"
#: SHA-512 of ``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip`` (Maven Central).
PINNED_SHA512: dict[str, str] = {
    "8.19.21": "cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d"
    "4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd",
    # The newest 9.x Maven Central served on 2026-12-01 (its maven-metadata.xml lists no 9.x at all, yet
    # the 9.2.4 zip is there). 9.x zips come without .sha1 files, so Maven's own check is lax ("-c");
    # this hash is the check that counts.
    "9.2.4": "5da6465950f7d26ca293794ead3d840f0698ce99bb15b5db7d10c19199e3431d"
    "ba21c83c737f4befa4fc282e12e5f215343a4cb7da52ac85e52b0c488e7b7057",
}
#: The 9.x version the second integration pass of ``scripts/test`` selects (``RCP_ES_VERSION``).
NEWEST_9X = "9.2.4"
#: JDKs known to run each major version on this project's machines (8.x needs >= 17, 9.x >= 21).
DEFAULT_JAVA_HOMES: dict[int, tuple[str, ...]] = {
    8: ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64"),
    9: ("/usr/lib/jvm/java-21-openjdk-amd64", "/usr/lib/jvm/temurin-25-jdk-amd64"),
}
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
CLUSTER_NAME = "rcp-test"
DEFAULT_ES_USER = "rcp-es"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
STATE_FILE = "node.json"
#: What ``start --nodes N`` leaves in its workdir: the node workdirs (``node-0`` ...), for ``stop``.
CLUSTER_STATE_FILE = "cluster.json"
#: Superuser of a secure node: the reserved ``elastic`` user, its password the keystore's bootstrap.password.
ADMIN_USER = "elastic"
#: Directory of ``run_dir`` holding a secure node's generated CA, node certificate and admin password. It
#: stays owned by the harness (0700): the node only gets copies of what it needs, never the CA key.
SECURE_DIR = "secure"
CERT_DAYS = 2
TOOL_TIMEOUT_S = 120.0
_VERIFIED_MARKER = ".rcp-verified-sha512"
#: Java source and descriptor template of the test plugin secure nodes load (:func:`ensure_test_plugin`).
TEST_PLUGIN_SRC = Path(__file__).resolve().parent / "es_test_plugin"
TEST_PLUGIN_NAME = "rcp-security-index-analysis"
JAVAC_TIMEOUT_S = 300.0


class NodeError(RuntimeError):
    """Fetching, starting or stopping the node failed; the message says what was tried and what happened."""


# --------------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class Distribution:
    """Which zip to use and the hash it must have."""

    version: str
    sha512: str

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def maven_artifact(self) -> str:
        return f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{self.version}:zip"

    @property
    def zip_name(self) -> str:
        return f"elasticsearch-{self.version}.zip"


def resolve_distribution(env: dict[str, str] | None = None) -> Distribution:
    """Version from ``RCP_ES_VERSION``; hash from ``RCP_ES_SHA512`` or the pinned table (never unchecked)."""
    env = dict(os.environ) if env is None else env
    version = env.get("RCP_ES_VERSION") or DEFAULT_VERSION
    sha = (env.get("RCP_ES_SHA512") or PINNED_SHA512.get(version, "")).strip().lower()
    if not sha:
        raise NodeError(
            f"no SHA-512 pinned for Elasticsearch {version} in scripts/es_node.py; "
            "add it to PINNED_SHA512 or set RCP_ES_SHA512"
        )
    if len(sha) != 128 or any(c not in "0123456789abcdef" for c in sha):
        raise NodeError(f"SHA-512 for Elasticsearch {version} is not 128 hex digits: {sha!r}")
    return Distribution(version, sha)


def default_cache_dir(env: dict[str, str] | None = None) -> Path:
    """Kept outside the git tree: the zip is ~107 MB and the unpacked tree ~125 MB."""
    env = dict(os.environ) if env is None else env
    if env.get("RCP_ES_CACHE"):
        return Path(env["RCP_ES_CACHE"]).expanduser()
    return Path.home() / ".cache" / "rare-child-connector" / "elasticsearch"


def sha512_of(path: Path) -> str:
    h = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha512(path: Path, expected: str) -> None:
    """Raise :class:`NodeError` unless ``path`` hashes to ``expected`` (Maven's own .sha1 check is weak)."""
    actual = sha512_of(path)
    if actual != expected.lower():
        raise NodeError(f"SHA-512 mismatch for {path}:\n  expected {expected}\n  actual   {actual}")


def safe_extract(zip_path: Path, dest: Path) -> None:
    """Unzip keeping Unix modes (zipfile drops them; bin/ must stay executable); refuse escaping paths."""
    root = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if target != root and root not in target.parents:
                raise NodeError(f"refusing zip entry outside the target directory: {info.filename!r}")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                os.chmod(target, mode)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise concurrent fetches (e.g. two pytest sessions) on the same cache."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _download_with_maven(dist: Distribution, out_dir: Path) -> Path:
    mvn = shutil.which("mvn")
    cmd = [
        # "-c" (lax checksums): 9.x zips are published without .sha1/.md5 files, which "-C" refuses;
        # the caller verifies the pinned SHA-512 of what arrives (verify_sha512), a stronger check.
        "mvn", "-B", "-q", "-c", f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={dist.maven_artifact}", f"-DoutputDirectory={out_dir}",
    ]  # fmt: skip
    if mvn is None:
        raise NodeError(
            f"cannot fetch Elasticsearch {dist.version}: 'mvn' is not on PATH. Tried: {' '.join(cmd)} "
            "(install Maven, or put the zip into the cache dir yourself; RCP_ES_CACHE overrides it)"
        )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeError(
            f"cannot fetch Elasticsearch {dist.version}: timed out after 900 s: {' '.join(cmd)}"
        ) from exc
    produced = out_dir / dist.zip_name
    if proc.returncode != 0 or not produced.is_file():
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise NodeError(
            f"cannot fetch Elasticsearch {dist.version} from Maven Central (exit {proc.returncode}).\n"
            f"Tried: {' '.join(cmd)}\n{output}"
        )
    return produced


def ensure_distribution(dist: Distribution | None = None, cache_dir: Path | None = None) -> Path:
    """Return an unpacked, hash-verified Elasticsearch home in the cache, downloading/unpacking only once."""
    dist = dist or resolve_distribution()
    cache = cache_dir or default_cache_dir()
    home = cache / f"elasticsearch-{dist.version}"
    marker = home / _VERIFIED_MARKER
    if marker.is_file() and marker.read_text().strip() == dist.sha512:
        return home
    with _locked(cache / ".lock"):
        if marker.is_file() and marker.read_text().strip() == dist.sha512:
            return home  # another process finished it while we waited
        zip_path = cache / dist.zip_name
        if zip_path.is_file():
            try:
                verify_sha512(zip_path, dist.sha512)
            except NodeError:
                zip_path.unlink()  # stale or corrupted: fetch again
        if not zip_path.is_file():
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                fetched = _download_with_maven(dist, Path(tmp))
                verify_sha512(fetched, dist.sha512)
                fetched.replace(zip_path)
        if home.exists():
            shutil.rmtree(home)  # unverified leftovers of an interrupted unpack
        with tempfile.TemporaryDirectory(dir=cache, prefix=".unpack-") as tmp:
            safe_extract(zip_path, Path(tmp))
            unpacked = Path(tmp) / f"elasticsearch-{dist.version}"
            if not (unpacked / "bin" / "elasticsearch").is_file():
                raise NodeError(f"{zip_path} does not contain elasticsearch-{dist.version}/bin/elasticsearch")
            unpacked.replace(home)
        marker.write_text(dist.sha512 + "\n")
    return home


# --------------------------------------------------------------------------------------------------- plugin


def plugin_sources(src_dir: Path = TEST_PLUGIN_SRC) -> list[Path]:
    """The plugin's Java files and its descriptor template, in a stable order."""
    descriptor = src_dir / "plugin-descriptor.properties"
    java = sorted((src_dir / "src").rglob("*.java"))
    if not descriptor.is_file() or not java:
        raise NodeError(f"test plugin sources missing: need {descriptor} and src/**/*.java in {src_dir}")
    return [descriptor, *java]


def plugin_build_key(dist: Distribution, src_dir: Path = TEST_PLUGIN_SRC) -> str:
    """Cache key of a build: the Elasticsearch version it is compiled against plus every source file."""
    h = hashlib.sha256(f"es={dist.version}\n".encode())
    for path in plugin_sources(src_dir):
        content = path.read_bytes()
        h.update(f"{path.relative_to(src_dir)}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()[:16]


def ensure_test_plugin(
    dist: Distribution | None = None,
    es_home: Path | None = None,
    java_home: Path | None = None,
    cache_dir: Path | None = None,
    src_dir: Path = TEST_PLUGIN_SRC,
) -> Path:
    """Return a directory holding the built test plugin (jar + descriptor), compiling it only once.

    The build is cached per Elasticsearch version and source hash (``test-plugin-<version>-<key>``), made
    under the cache's lock in a temporary dir and renamed into place, so concurrent sessions never see a
    half-built plugin. Compiled with ``javac --release 17`` against ``es_home/lib/*`` (no download).
    """
    dist = dist or resolve_distribution()
    cache = cache_dir or default_cache_dir()
    es_home = es_home or ensure_distribution(dist, cache)
    built = cache / f"test-plugin-{dist.version}-{plugin_build_key(dist, src_dir)}"
    if (built / TEST_PLUGIN_NAME / "plugin-descriptor.properties").is_file():
        return built / TEST_PLUGIN_NAME
    java_home = java_home or default_java_home(dist)
    with _locked(cache / ".lock"):
        if (built / TEST_PLUGIN_NAME / "plugin-descriptor.properties").is_file():
            return built / TEST_PLUGIN_NAME  # another process built it while we waited
        with tempfile.TemporaryDirectory(dir=cache, prefix=".plugin-build-") as tmp:
            staged = Path(tmp) / "out"
            _build_test_plugin(dist, es_home, java_home, src_dir, staged / TEST_PLUGIN_NAME)
            staged.replace(built)
    return built / TEST_PLUGIN_NAME


def _build_test_plugin(dist: Distribution, es_home: Path, java_home: Path, src_dir: Path, out: Path) -> None:
    """javac the sources into ``out/<name>.jar`` and fill in the descriptor's ``@ES_VERSION@``."""
    sources = plugin_sources(src_dir)
    javac = java_home / "bin" / "javac"
    if not javac.is_file():
        raise NodeError(f"cannot build the test plugin: no {javac} (ES_JAVA_HOME must be a JDK, not a JRE)")
    classes = out.parent.parent / "classes"
    classes.mkdir(parents=True)
    out.mkdir(parents=True)
    cmd = [str(javac), "--release", "17", "-proc:none", "-encoding", "UTF-8", "-nowarn",
           "-cp", str(es_home / "lib" / "*"), "-d", str(classes), *map(str, sources[1:])]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=JAVAC_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeError(
            f"building the test plugin timed out after {JAVAC_TIMEOUT_S:.0f} s: {' '.join(cmd)}"
        ) from exc
    if proc.returncode != 0:
        raise NodeError(
            f"building the test plugin failed (javac exit {proc.returncode}).\nTried: {' '.join(cmd)}\n"
            f"{(proc.stdout + proc.stderr)[-8000:]}"
        )
    jar = out / f"{TEST_PLUGIN_NAME}.jar"
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
        for path in sorted(classes.rglob("*.class")):
            zf.write(path, path.relative_to(classes).as_posix())
    descriptor = sources[0].read_text().replace("@ES_VERSION@", dist.version)
    (out / "plugin-descriptor.properties").write_text(descriptor)
    for path in (out, *out.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # read by the ES account, which is not root


def install_test_plugin(plugin_dir: Path, home: Path) -> None:
    """Put the built plugin into the node's ``home/plugins`` (what ``elasticsearch-plugin install`` does)."""
    target = home / "plugins" / plugin_dir.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(plugin_dir, target)


# --------------------------------------------------------------------------------------------------- start


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free now (a tiny race remains; start_node then fails loudly, not silently)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def render_config(
    port: int,
    data_dir: Path,
    logs_dir: Path,
    *,
    secure: bool = False,
    cluster: dict[str, str | list[str]] | None = None,
) -> str:
    """elasticsearch.yml for a disposable loopback node.

    Fixed http.port (the default 9200-9300 range silently moves on); security off (also skips the TLS
    auto-configuration); disk thresholds and the real-memory breaker off so a busy CI box cannot turn the
    node read-only or trip breakers; wildcard deletes allowed for cleanup of test-owned patterns.

    ``secure``: security on with TLS on the HTTP layer, from the files :func:`install_security` copies
    into ``<config>/certs`` (Elasticsearch reads TLS files only from inside its config dir). Setting these
    explicitly also keeps the auto-configuration out. Transport TLS stays off: a single-node loopback
    node only warns about it (the bootstrap checks are not enforced there).

    ``cluster``: the settings of one member of a multi-node cluster (:func:`cluster_member_settings`); they
    replace ``discovery.type: single-node`` and the node name.
    """
    settings = {
        "cluster.name": CLUSTER_NAME,
        "node.name": "rcp-test-node",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": str(port),
        "path.data": str(data_dir),
        "path.logs": str(logs_dir),
        "xpack.security.enabled": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        "action.destructive_requires_name": "false",
        "indices.breaker.total.use_real_memory": "false",
    }
    if cluster is not None:
        del settings["discovery.type"]
        settings.update(cluster)
    if secure:
        settings.update(SECURE_SETTINGS)
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


def cluster_member_settings(
    index: int, transport_ports: list[int], cluster_name: str
) -> dict[str, str | list[str]]:
    """``elasticsearch.yml`` settings of node ``index`` of a loopback cluster over ``transport_ports``.

    Every node is master-eligible and holds data; all are named in ``cluster.initial_master_nodes`` (the
    first election needs a majority of them) and every transport address is a seed host. Transport
    binds to loopback, so the production bootstrap checks stay off, as for a single node.
    """
    names = [f"rcp-test-node-{i}" for i in range(len(transport_ports))]
    return {
        "cluster.name": cluster_name,
        "node.name": names[index],
        "transport.port": str(transport_ports[index]),
        "discovery.seed_hosts": [f"127.0.0.1:{port}" for port in transport_ports],
        "cluster.initial_master_nodes": names,
    }


#: What a secure node adds to :func:`render_config` (paths relative to the config dir).
SECURE_SETTINGS: dict[str, str | list[str]] = {
    "xpack.security.enabled": "true",
    "xpack.security.http.ssl.enabled": "true",
    "xpack.security.http.ssl.key": "certs/node.key",
    "xpack.security.http.ssl.certificate": "certs/node.crt",
    "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
    # File-realm users and roles (add_file_user/add_file_role) are picked up within a second, not five.
    "resource.reload.interval.high": "1s",
}


# --------------------------------------------------------------------------------------------------- secure


@dataclass(frozen=True)
class Security:
    """Where a secure node's CA certificate is and how the harness logs in as its superuser.

    The admin credentials are for test fixtures only (creating roles and API keys); the password is kept
    in a 0600 file and never printed or put into the repr.
    """

    ca_path: Path
    admin_user: str
    admin_password: str = field(repr=False)

    @property
    def password_file(self) -> Path:
        return self.ca_path.parent / "admin-password"

    @classmethod
    def load(cls, secure_dir: Path) -> Security:
        return cls(secure_dir / "ca.crt", ADMIN_USER, (secure_dir / "admin-password").read_text().strip())

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the node against the throw-away CA only (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def basic_auth_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.admin_user}:{self.admin_password}".encode()).decode()


def _tool_env(java_home: Path, conf: Path) -> dict[str, str]:
    """The environment of the distribution's CLI tools: a small heap, no inherited variables."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "ES_JAVA_HOME": str(java_home), "ES_PATH_CONF": str(conf),
            "ES_JAVA_OPTS": "-Xms64m -Xmx256m"}  # fmt: skip


def _run_tool(argv: list[str], env: dict[str, str], *, stdin: str | None = None) -> None:
    """Run one of the distribution's CLI tools (a JVM each); :class:`NodeError` with its output on failure.

    ``stdin`` carries secrets (never argv: /proc/<pid>/cmdline is world-readable); it is not echoed.
    """
    try:
        proc = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"{' '.join(argv)} timed out after {TOOL_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")


def _unzip_one(zip_path: Path, member: str, dest: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        dest.write_bytes(zf.read(member))
    dest.chmod(0o600)


def generate_security(home: Path, config_src: Path, java_home: Path, secure_dir: Path) -> Security:
    """A throw-away CA, a node certificate for 127.0.0.1/localhost, and a keystore with the admin password.

    Uses the distribution's own ``elasticsearch-certutil`` (PEM, silent, offline) and
    ``elasticsearch-keystore``; each is a JVM start of a few seconds, so the keystore is written while the
    certificates are generated. Everything lands in ``secure_dir`` (0700, the harness's); the node gets
    copies (:func:`install_security`), never the CA key.
    """
    secure_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tool_conf = secure_dir / "tool-config"  # the tools need an ES_PATH_CONF; the keystore is written there
    shutil.rmtree(tool_conf, ignore_errors=True)
    shutil.copytree(config_src, tool_conf)
    env = _tool_env(java_home, tool_conf)
    password = secrets.token_urlsafe(24)
    password_file = secure_dir / "admin-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    keystore = [str(home / "bin" / "elasticsearch-keystore"), "add", "-f", "-x", "bootstrap.password"]
    with subprocess.Popen(keystore, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as keystore_proc:  # fmt: skip
        try:
            _generate_certificates(home / "bin" / "elasticsearch-certutil", env, secure_dir)
            output, _ = keystore_proc.communicate(password + "\n", timeout=TOOL_TIMEOUT_S)
        except BaseException:
            keystore_proc.kill()
            raise
    if keystore_proc.returncode != 0:
        raise NodeError(f"{' '.join(keystore)} exited {keystore_proc.returncode}:\n{output[-4000:]}")
    shutil.copy2(tool_conf / "elasticsearch.keystore", secure_dir / "elasticsearch.keystore")
    shutil.rmtree(tool_conf)
    return Security.load(secure_dir)


def _generate_certificates(certutil: Path, env: dict[str, str], secure_dir: Path) -> None:
    """``ca.crt``/``ca.key``, then ``node.crt``/``node.key`` for IP:127.0.0.1 and DNS:localhost.

    Paths are absolute: the launcher changes into ES_HOME before the tool runs.
    """
    ca_zip, node_zip = secure_dir / "ca.zip", secure_dir / "node.zip"
    days = ["--days", str(CERT_DAYS)]
    for stale in (ca_zip, node_zip):
        stale.unlink(missing_ok=True)
    _run_tool([str(certutil), "ca", "--pem", "--silent", "--ca-dn", "CN=rcp-test-ca", *days,
               "--out", str(ca_zip)], env)  # fmt: skip
    _unzip_one(ca_zip, "ca/ca.crt", secure_dir / "ca.crt")
    _unzip_one(ca_zip, "ca/ca.key", secure_dir / "ca.key")
    _run_tool([str(certutil), "cert", "--pem", "--silent", "--ca-cert", str(secure_dir / "ca.crt"),
               "--ca-key", str(secure_dir / "ca.key"), "--name", "node", "--ip", "127.0.0.1",
               "--dns", "localhost", *days, "--out", str(node_zip)], env)  # fmt: skip
    _unzip_one(node_zip, "node/node.crt", secure_dir / "node.crt")
    _unzip_one(node_zip, "node/node.key", secure_dir / "node.key")
    ca_zip.unlink()
    node_zip.unlink()


def install_security(secure_dir: Path, conf: Path) -> None:
    """Copy what the node reads (CA and node certificate, node key, keystore) into its config dir."""
    certs = conf / "certs"
    certs.mkdir(exist_ok=True)
    for name in ("ca.crt", "node.crt", "node.key"):
        shutil.copy2(secure_dir / name, certs / name)
    shutil.copy2(secure_dir / "elasticsearch.keystore", conf / "elasticsearch.keystore")


def default_java_home(dist: Distribution, env: dict[str, str] | None = None) -> Path:
    """``ES_JAVA_HOME`` if set (the zip bundles no JDK and ignores JAVA_HOME), else a known-good JDK."""
    env = dict(os.environ) if env is None else env
    if env.get("ES_JAVA_HOME"):
        return Path(env["ES_JAVA_HOME"])
    candidates = DEFAULT_JAVA_HOMES.get(dist.major, ())
    for candidate in candidates:
        if (Path(candidate) / "bin" / "java").is_file():
            return Path(candidate)
    raise NodeError(
        f"no JDK for Elasticsearch {dist.version}: set ES_JAVA_HOME (looked in {list(candidates)})"
    )


def _es_user() -> pwd.struct_passwd | None:
    """None when not root (run as the current user); else the dedicated account, created on first use."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("RCP_ES_USER", DEFAULT_ES_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(name)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link read-only distribution files (fast, no extra disk); copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _ancestors_traversable(path: Path) -> bool:
    """Whether another user (the ES account) can reach ``path`` through its parent directories."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, user.pw_uid, user.pw_gid, follow_symlinks=False)


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (the daemonised node is not our child to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _pid_belongs_to(pid: int, workdir: Path) -> bool:
    """Guard against pid reuse and bystanders: only a JVM whose ``-Des.path.home`` is our workdir's home.

    (Matching the bare workdir path would also hit e.g. ``es_node.py stop --workdir DIR`` itself.)
    """
    if pid == os.getpid():
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return f"-Des.path.home={workdir / 'home'}" in args


def _pids_using(workdir: Path) -> set[int]:
    """Live Elasticsearch JVMs (launcher or server) running from ``workdir``.

    Safety net for a launcher that timed out before the node wrote its pid file.
    """
    return {
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _pid_alive(int(entry.name)) and _pid_belongs_to(int(entry.name), workdir)
    }


def cluster_health_ok(
    url: str,
    timeout_s: float = 10.0,
    *,
    security: Security | None = None,
    status: str = "yellow",
    nodes: int | None = None,
) -> bool:
    """True once the node answers health with at least ``status`` (GET / is 405 on this zip: no rest-root)
    and, with ``nodes``, that many nodes in the cluster.

    A secure node is asked over https, verified against its CA, as the admin (health needs ``monitor``).
    """
    query = f"wait_for_status={status}&timeout=5s" + (f"&wait_for_nodes={nodes}" if nodes else "")
    request = urllib.request.Request(f"{url}/_cluster/health?{query}")
    context = None
    if security is not None:
        request.add_header("Authorization", security.basic_auth_header())
        context = security.ssl_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):  # refused = still booting; 408/503 = not ready yet
        return False


@dataclass
class RunningNode:
    """A started node; :meth:`stop` is safe to call more than once.

    ``workdir`` is the caller's directory (holds node.json); ``run_dir`` holds home/config/data/logs and
    is the same directory unless it had to be relocated (see :func:`start_node`).
    """

    url: str
    pid: int
    port: int
    workdir: Path
    run_dir: Path
    #: Set for a node started with ``secure=True``: its CA and the harness's admin credentials.
    security: Security | None = None
    #: Set for a member of a multi-node cluster (:func:`start_cluster`): its discovery settings.
    cluster: dict[str, str | list[str]] | None = None

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def log_text(self, max_chars: int = 20000) -> str:
        """Launcher output plus the tail of the node's own log, for failure messages."""
        parts = []
        for path in [self.run_dir / "launcher.out", *sorted(self.logs_dir.glob("*.log"))]:
            if path.is_file():
                text = path.read_text(errors="replace")
                parts.append(f"===== {path} =====\n{text[-max_chars:]}")
        return "\n".join(parts) or f"(no logs in {self.run_dir})"

    def live_pids(self) -> set[int]:
        """The node's JVMs still running (the pid file's, plus any found by their ES home path)."""
        pids = _pids_using(self.run_dir)
        if self.pid and _pid_alive(self.pid) and _pid_belongs_to(self.pid, self.run_dir):
            pids.add(self.pid)
        return pids

    def stop(self, timeout_s: float = STOP_TIMEOUT_S, *, keep_data: bool = False) -> None:
        """SIGTERM (graceful shutdown), wait, then SIGKILL and wait: never leave a JVM behind.

        Rescans while waiting, so a server spawned by a still-running launcher is caught too.
        A relocated run dir is removed afterwards, its logs copied into ``workdir/logs`` first, unless
        ``keep_data`` (the node is to be started again on the same data, see :meth:`restart`).
        """
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            deadline = time.monotonic() + wait_s
            signalled: set[int] = set()
            while pids := self.live_pids():
                for pid in pids - signalled:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                    signalled.add(pid)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                break
        else:
            raise NodeError(f"Elasticsearch pid(s) {sorted(self.live_pids())} survived SIGKILL")
        if not keep_data and self.run_dir != self.workdir and self.run_dir.is_dir():
            if self.logs_dir.is_dir():
                shutil.copytree(self.logs_dir, self.workdir / "logs", dirs_exist_ok=True)
            if (self.run_dir / "launcher.out").is_file():
                shutil.copy2(self.run_dir / "launcher.out", self.workdir / "launcher.out")
            shutil.rmtree(self.run_dir)
            link = self.workdir / "node"
            if link.is_symlink():
                link.unlink()

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> RunningNode:
        """Start the node again on the same port and data (after ``stop(keep_data=True)``)."""
        return start_node(self.workdir, port=self.port, timeout_s=timeout_s, run_dir=self.run_dir,
                          secure=self.security is not None, cluster=self.cluster)  # fmt: skip

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL every JVM of the node (a crash: no graceful shutdown) and wait until they are gone.

        The files stay, so :meth:`restart` brings the node back on the same data.
        """
        self._signal_all(signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while self.live_pids():
            if time.monotonic() > deadline:
                raise NodeError(f"Elasticsearch pid(s) {sorted(self.live_pids())} survived SIGKILL")
            time.sleep(0.1)

    def pause(self) -> None:
        """SIGSTOP every JVM of the node: it keeps its sockets open but answers nothing (a hung node)."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        pids = self.live_pids()
        if not pids:
            raise NodeError(f"no running Elasticsearch process in {self.run_dir}")
        for pid in pids:
            os.kill(pid, sig)

    def add_file_role(self, name: str, descriptor: dict[str, object]) -> None:
        """Define ``name`` in the node's ``roles.yml`` (a JSON role descriptor is valid YAML).

        File roles need no ``.security`` index. (Native roles, users and API keys do; a secure node can
        create it thanks to the test plugin, see :func:`ensure_test_plugin`.)
        """
        roles = self.run_dir / "config" / "roles.yml"
        with roles.open("a") as f:
            f.write(f"{json.dumps(name)}: {json.dumps(descriptor)}\n")

    def add_file_user(self, name: str, password: str, roles: list[str], timeout_s: float = 30.0) -> None:
        """Add a file-realm user (``elasticsearch-users``, password on stdin) and wait until it logs in.

        Add its roles first (:meth:`add_file_role`): the node reloads roles.yml within a second, and the
        tool alone takes longer than that.
        """
        if self.security is None:
            raise NodeError("file-realm users need a node started with secure=True")
        home, conf = self.run_dir / "home", self.run_dir / "config"
        env = _tool_env(default_java_home(resolve_distribution()), conf)
        argv = [str(home / "bin" / "elasticsearch-users"), "useradd", name, "-r", ",".join(roles)]
        user = _es_user()
        if user is not None:  # the files belong to the ES account and must stay readable for it
            argv = ["runuser", "-u", user.pw_name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                    *argv]  # fmt: skip
        _run_tool(argv, env, stdin=f"{password}\n{password}\n")
        self._wait_for_login(name, password, timeout_s)

    def _wait_for_login(self, name: str, password: str, timeout_s: float) -> None:
        assert self.security is not None
        login = Security(self.security.ca_path, name, password)
        request = urllib.request.Request(f"{self.url}/_security/_authenticate")
        request.add_header("Authorization", login.basic_auth_header())
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10, context=login.ssl_context()) as resp:
                    roles = json.load(resp).get("roles", [])
                    if roles:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise NodeError(f"file-realm user {name!r} could not log in within {timeout_s:.0f} s")
            time.sleep(0.3)

    def save(self) -> None:
        """The state ``stop --workdir`` needs; a secure node's password stays in its own 0600 file."""
        state = {"url": self.url, "pid": self.pid, "port": self.port, "run_dir": str(self.run_dir),
                 "secure": self.security is not None, "cluster": self.cluster}  # fmt: skip
        (self.workdir / STATE_FILE).write_text(json.dumps(state) + "\n")

    @classmethod
    def load(cls, workdir: Path) -> RunningNode:
        state = json.loads((workdir / STATE_FILE).read_text())
        run_dir = Path(state["run_dir"])
        security = None
        if state.get("secure") and (run_dir / SECURE_DIR / "admin-password").is_file():
            security = Security.load(run_dir / SECURE_DIR)
        return cls(state["url"], int(state["pid"]), int(state["port"]), workdir, run_dir, security,
                   state.get("cluster"))  # fmt: skip


def start_node(
    workdir: Path,
    port: int | None = None,
    heap_mb: int = 512,
    timeout_s: float = START_TIMEOUT_S,
    run_dir: Path | None = None,
    *,
    secure: bool = False,
    cluster: dict[str, str | list[str]] | None = None,
) -> RunningNode:
    """Start a single node with everything (home, config, data, logs, tmp) under ``workdir``; wait for yellow.

    The distribution is hard-linked into ``home/``: the cache may live under /root (0700, out of the ES
    user's reach), and the launcher may write (gc.log, heap dumps) relative to ES_HOME, so home and
    home/logs are made writable for the ES user. As root, when the ES user cannot traverse workdir's
    parents (pytest's /tmp/pytest-of-root is 0700, and every new root pytest session re-tightens it, so
    loosening it is racy), the files go to a private /tmp/rcp-es-* dir instead, linked as ``workdir/node``
    and removed by :meth:`RunningNode.stop`. ``run_dir`` reuses the files (and data) of an earlier node
    of the same ``workdir`` (:meth:`RunningNode.restart`). On any failure, or Ctrl-C, the node is stopped;
    :class:`NodeError` carries the launcher output and the node's log.

    ``secure``: security and HTTP TLS on (:func:`generate_security`; a restart reuses the same CA and
    password), the URL is https, and :attr:`RunningNode.security` has the CA path and admin credentials.
    A secure node also gets the test plugin (:func:`ensure_test_plugin`), so API keys can be created.

    ``cluster``: start one member of a multi-node cluster (:func:`cluster_member_settings`), e.g. to bring
    a stopped member back; it is healthy once it answers yellow, i.e. has joined an elected master.
    """
    node, launcher, env, pid_file = _prepare_node(
        workdir, port, heap_mb, run_dir, secure=secure, cluster=cluster
    )
    try:
        _launch_and_wait(node, launcher, env, pid_file, timeout_s)
    except BaseException:  # NodeError, but also Ctrl-C: never leave a half-started JVM behind
        node.stop()
        raise
    return node


def _prepare_node(
    workdir: Path,
    port: int | None,
    heap_mb: int,
    run_dir: Path | None,
    *,
    secure: bool,
    cluster: dict[str, str | list[str]] | None,
) -> tuple[RunningNode, list[str], dict[str, str], Path]:
    """Lay out a node's files and config (see :func:`start_node`); return it with its launch command."""
    dist = resolve_distribution()
    cached_home = ensure_distribution(dist)
    java_home = default_java_home(dist)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    user = _es_user()
    if run_dir is None:
        run_dir = workdir
        if user is not None and not _ancestors_traversable(workdir):
            run_dir = Path(tempfile.mkdtemp(prefix="rcp-es-", dir="/tmp"))
            (workdir / "node").unlink(missing_ok=True)
            (workdir / "node").symlink_to(run_dir)
    port = port or free_port()
    home, conf, data, logs, tmp = (run_dir / n for n in ("home", "config", "data", "logs", "tmp"))
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(cached_home, home, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("config"))
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(cached_home / "config", conf)
    (conf / "elasticsearch.yml").write_text(render_config(port, data, logs, secure=secure, cluster=cluster))
    security = None
    if secure:
        secure_dir = run_dir / SECURE_DIR
        if (secure_dir / "elasticsearch.keystore").is_file():
            security = Security.load(secure_dir)  # a restart: same CA, same admin password
        else:
            security = generate_security(home, cached_home / "config", java_home, secure_dir)
        install_security(secure_dir, conf)
        install_test_plugin(ensure_test_plugin(dist, cached_home, java_home), home)
    for d in (data, logs, tmp, home / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / "es.pid"
    pid_file.unlink(missing_ok=True)

    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "ES_JAVA_HOME": str(java_home),
        "ES_JAVA_OPTS": f"-Xms{heap_mb}m -Xmx{heap_mb}m",
        "ES_PATH_CONF": str(conf),
        "ES_TMPDIR": str(tmp),
    }
    launcher = [str(home / "bin" / "elasticsearch"), "-d", "-p", str(pid_file)]
    if user is not None:
        for d in (run_dir, home, home / "logs"):  # home's linked files stay root-owned and read-only
            os.chown(d, user.pw_uid, user.pw_gid)
        for d in (conf, data, logs, tmp):
            _chown_tree(d, user)
        launcher = ["runuser", "-u", user.pw_name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                    *launcher]  # fmt: skip

    scheme = "https" if secure else "http"
    node = RunningNode(f"{scheme}://127.0.0.1:{port}", pid=0, port=port, workdir=workdir, run_dir=run_dir,
                       security=security, cluster=cluster)  # fmt: skip
    node.save()  # before launching: `stop --workdir` can then clean up even an interrupted start
    return node, launcher, env, pid_file


def _launch_and_wait(
    node: RunningNode,
    launcher: list[str],
    env: dict[str, str],
    pid_file: Path,
    timeout_s: float,
    *,
    wait_for_health: bool = True,
) -> None:
    started = time.monotonic()
    with (node.run_dir / "launcher.out").open("w") as out:
        try:
            # -d: the launcher returns once the daemonised node has started (or failed to).
            proc = subprocess.run(launcher, env=env, cwd=node.run_dir / "home", stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s,
                                  check=False)  # fmt: skip
            returncode: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    if pid_file.is_file():
        node.pid = int(pid_file.read_text().strip())
        node.save()
    if returncode != 0:
        what = "timed out" if returncode is None else f"exited {returncode}"
        raise NodeError(f"Elasticsearch launcher {what}: {' '.join(launcher)}\n{node.log_text()}")
    while wait_for_health and not cluster_health_ok(node.url, security=node.security):
        if not _pid_alive(node.pid) or time.monotonic() - started > timeout_s:
            raise NodeError(
                f"Elasticsearch at {node.url} not healthy within {timeout_s:.0f} s\n{node.log_text()}"
            )
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------- cluster


@dataclass
class RunningCluster:
    """The members of a loopback cluster started by :func:`start_cluster`; :meth:`stop` stops them all."""

    workdir: Path
    nodes: list[RunningNode]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def stop(self) -> None:
        """Stop every member (each is safe to stop twice); raise once all were tried, if one survived."""
        problems = []
        for node in self.nodes:
            try:
                node.stop()
            except NodeError as exc:
                problems.append(str(exc))
        if problems:
            raise NodeError("; ".join(problems))

    def save(self) -> None:
        workdirs = [str(node.workdir) for node in self.nodes]
        (self.workdir / CLUSTER_STATE_FILE).write_text(json.dumps({"nodes": workdirs}) + "\n")

    @classmethod
    def load(cls, workdir: Path) -> RunningCluster:
        state = json.loads((workdir / CLUSTER_STATE_FILE).read_text())
        return cls(workdir, [RunningNode.load(Path(node)) for node in state["nodes"]])


def start_cluster(
    workdir: Path, nodes: int = 3, heap_mb: int = 512, timeout_s: float = START_TIMEOUT_S
) -> RunningCluster:
    """Start ``nodes`` nodes on 127.0.0.1 forming one cluster; return once it is green with all of them.

    Each member is a :func:`start_node` node in ``workdir/node-<i>`` (own ports, data and logs), security
    off. They are launched together (the first master election needs a majority of them), and the
    cluster name is unique, so two clusters on one machine never merge. On any failure every member is
    stopped and :class:`NodeError` carries their logs.
    """
    if nodes < 2:
        raise NodeError(f"a cluster needs at least 2 nodes, not {nodes}; use start_node for one")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    transport_ports = _distinct_free_ports(nodes)
    http_ports = _distinct_free_ports(nodes, exclude=set(transport_ports))
    name = f"{CLUSTER_NAME}-{secrets.token_hex(4)}"
    cluster = RunningCluster(workdir, [])
    launches = []
    try:
        for i in range(nodes):
            settings = cluster_member_settings(i, transport_ports, name)
            prepared = _prepare_node(workdir / f"node-{i}", http_ports[i], heap_mb, None, secure=False,
                                     cluster=settings)  # fmt: skip
            cluster.nodes.append(prepared[0])
            launches.append(prepared)
        cluster.save()
        errors: list[BaseException] = []

        def launch(prepared: tuple[RunningNode, list[str], dict[str, str], Path]) -> None:
            try:
                _launch_and_wait(*prepared, timeout_s, wait_for_health=False)
            except BaseException as exc:  # reported by the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=launch, args=(prepared,), daemon=True) for prepared in launches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        started = time.monotonic()
        first = cluster.nodes[0]
        while not cluster_health_ok(first.url, status="green", nodes=nodes):
            if time.monotonic() - started > timeout_s:
                logs = "\n".join(node.log_text(4000) for node in cluster.nodes)
                raise NodeError(f"the {nodes}-node cluster was not green within {timeout_s:.0f} s\n{logs}")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _distinct_free_ports(count: int, exclude: set[int] | None = None) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in (exclude or set()):
            ports.append(port)
    return ports


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "fetch",
        help="download (mvn), verify SHA-512 and unpack the zip into the cache; "
        "build the secure nodes' test plugin",
    )
    start = sub.add_parser("start", help="start a node, wait for health, print ES_URL and leave it running")
    start.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    start.add_argument("--workdir", type=Path, default=None, help="default: a new /tmp/rcp-es-* directory")
    start.add_argument("--heap-mb", type=int, default=512, help="heap of each node (default 512)")
    start.add_argument(
        "--nodes", type=int, default=1, help="start N nodes forming one loopback cluster (security off)"
    )
    start.add_argument(
        "--secure", action="store_true", help="security and HTTP TLS on; also prints the CA and password file"
    )
    stop = sub.add_parser("stop", help="stop the node(s) started in --workdir (SIGTERM, then SIGKILL)")
    stop.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            home = ensure_distribution()
            print(f"ES_HOME={home}")
            print(f"ES_TEST_PLUGIN={ensure_test_plugin(es_home=home)}")
        elif args.command == "start" and args.nodes > 1:
            if args.secure or args.port:
                raise NodeError("--nodes starts an insecure cluster on free ports; drop --secure and --port")
            workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rcp-es-"))
            began = time.monotonic()
            cluster = start_cluster(workdir, nodes=args.nodes, heap_mb=args.heap_mb)
            print(f"ES_URLS={','.join(cluster.urls)}")
            print(f"ES_URL={cluster.urls[0]}")
            print(f"ES_WORKDIR={cluster.workdir}")
            print(f"# {args.nodes} nodes green after {time.monotonic() - began:.1f} s; stop with: "
                  f"python {sys.argv[0]} stop --workdir {cluster.workdir}", file=sys.stderr)  # fmt: skip
        elif args.command == "start":
            workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rcp-es-"))
            began = time.monotonic()
            node = start_node(workdir, port=args.port, heap_mb=args.heap_mb, secure=args.secure)
            print(f"ES_URL={node.url}")
            if node.security is not None:
                print(f"ES_CA_CERTS={node.security.ca_path}")
                print(f"ES_ADMIN_USER={node.security.admin_user}")
                print(f"ES_ADMIN_PASSWORD_FILE={node.security.password_file}")
            print(f"ES_PID={node.pid}")
            print(f"ES_WORKDIR={node.workdir}")
            if node.run_dir != node.workdir:
                print(f"ES_RUN_DIR={node.run_dir}")
            print(f"# healthy after {time.monotonic() - began:.1f} s; stop with: "
                  f"python {sys.argv[0]} stop --workdir {node.workdir}", file=sys.stderr)  # fmt: skip
        else:
            workdir = args.workdir.resolve()
            if (workdir / CLUSTER_STATE_FILE).is_file():
                RunningCluster.load(workdir).stop()
                print(f"stopped cluster in {workdir}")
                return 0
            if not (workdir / STATE_FILE).is_file():
                print(f"no node state in {workdir}; nothing to stop", file=sys.stderr)
                return 0
            RunningNode.load(workdir).stop()
            print(f"stopped node in {workdir}")
    except NodeError as exc:
        print(f"es_node: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
