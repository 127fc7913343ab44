"""Unit tests for the Java-free parts of scripts/es_node.py (hashing, caching, config, process matching)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts import es_node


def _make_zip(path: Path, version: str, extra: dict[str, str] | None = None) -> str:
    """A miniature distribution zip; returns its SHA-512."""
    with zipfile.ZipFile(path, "w") as zf:
        launcher = zipfile.ZipInfo(f"elasticsearch-{version}/bin/elasticsearch")
        launcher.external_attr = 0o100755 << 16
        zf.writestr(launcher, "#!/bin/sh\n")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return hashlib.sha512(path.read_bytes()).hexdigest()


@pytest.fixture
def no_mvn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty PATH: any attempt to download must fail instead of reaching the network."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_verify_sha512_accepts_the_right_file(tmp_path: Path) -> None:
    """Pins that a matching hash (any case) passes silently."""
    f = tmp_path / "a.zip"
    f.write_bytes(b"elasticsearch")
    es_node.verify_sha512(f, hashlib.sha512(b"elasticsearch").hexdigest().upper())


def test_verify_sha512_refuses_a_corrupted_file(tmp_path: Path) -> None:
    """Pins that one flipped byte is refused, naming both hashes."""
    f = tmp_path / "a.zip"
    f.write_bytes(b"elasticsearcH")
    with pytest.raises(es_node.NodeError, match="SHA-512 mismatch"):
        es_node.verify_sha512(f, hashlib.sha512(b"elasticsearch").hexdigest())


def test_default_version_has_a_pinned_hash() -> None:
    """Pins that the default version is never used unchecked."""
    dist = es_node.resolve_distribution({})
    assert dist.version == es_node.DEFAULT_VERSION
    assert len(dist.sha512) == 128
    assert dist.maven_artifact.endswith(f":elasticsearch:{dist.version}:zip")


def test_unpinned_version_needs_an_explicit_hash() -> None:
    """Pins RCP_ES_VERSION without a pinned hash: refused unless RCP_ES_SHA512 (128 hex) is given."""
    with pytest.raises(es_node.NodeError, match="RCP_ES_SHA512"):
        es_node.resolve_distribution({"RCP_ES_VERSION": "9.9.9"})
    with pytest.raises(es_node.NodeError, match="128 hex"):
        es_node.resolve_distribution({"RCP_ES_VERSION": "9.9.9", "RCP_ES_SHA512": "abc"})
    dist = es_node.resolve_distribution({"RCP_ES_VERSION": "9.9.9", "RCP_ES_SHA512": "AB" * 64})
    assert (dist.version, dist.sha512, dist.major) == ("9.9.9", "ab" * 64, 9)


def test_cache_dir_is_overridable_and_outside_the_repo(tmp_path: Path) -> None:
    """Pins RCP_ES_CACHE and the ~/.cache default."""
    assert es_node.default_cache_dir({"RCP_ES_CACHE": str(tmp_path)}) == tmp_path
    default = es_node.default_cache_dir({})
    assert default.parts[-3:] == (".cache", "rare-child-connector", "elasticsearch")


def test_free_port_can_be_bound() -> None:
    """Pins that the picked port is a real, currently free loopback port."""
    port = es_node.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_render_config_is_a_loopback_single_node_without_security(tmp_path: Path) -> None:
    """Pins the settings the test node relies on (port, paths, security off, no disk/real-memory trips)."""
    text = es_node.render_config(9251, tmp_path / "data", tmp_path / "logs")
    settings = dict(line.split(": ", 1) for line in text.splitlines())
    assert settings == {
        "cluster.name": '"rcp-test"',
        "node.name": '"rcp-test-node"',
        "discovery.type": '"single-node"',
        "network.host": '"127.0.0.1"',
        "http.port": '"9251"',
        "path.data": f'"{tmp_path / "data"}"',
        "path.logs": f'"{tmp_path / "logs"}"',
        "xpack.security.enabled": '"false"',
        "cluster.routing.allocation.disk.threshold_enabled": '"false"',
        "action.destructive_requires_name": '"false"',
        "indices.breaker.total.use_real_memory": '"false"',
    }


def test_render_config_of_a_cluster_member_replaces_single_node_discovery(tmp_path: Path) -> None:
    """Pins a multi-node member's config: no single-node discovery, its own name and transport port, every
    member a seed host and an initial master, loopback only, the cluster's (unique) name."""
    member = es_node.cluster_member_settings(1, [9301, 9302, 9303], "rcp-test-abc")
    text = es_node.render_config(9251, tmp_path / "data", tmp_path / "logs", cluster=member)
    settings = dict(line.split(": ", 1) for line in text.splitlines())
    assert "discovery.type" not in settings
    assert settings["cluster.name"] == '"rcp-test-abc"'
    assert settings["node.name"] == '"rcp-test-node-1"'
    assert settings["transport.port"] == '"9302"'
    assert settings["network.host"] == '"127.0.0.1"'
    assert settings["discovery.seed_hosts"] == '["127.0.0.1:9301", "127.0.0.1:9302", "127.0.0.1:9303"]'
    masters = '["rcp-test-node-0", "rcp-test-node-1", "rcp-test-node-2"]'
    assert settings["cluster.initial_master_nodes"] == masters


def test_a_cluster_needs_two_nodes(tmp_path: Path) -> None:
    """Pins that start_cluster refuses a one-node "cluster" before touching anything."""
    with pytest.raises(es_node.NodeError, match="at least 2 nodes"):
        es_node.start_cluster(tmp_path, nodes=1)
    assert list(tmp_path.iterdir()) == []


def test_the_newest_9x_is_pinned_and_gets_a_9x_jdk() -> None:
    """Pins the 9.x distribution the second integration pass selects: a pinned hash, JDK 21+ candidates."""
    dist = es_node.resolve_distribution({"RCP_ES_VERSION": es_node.NEWEST_9X})
    assert dist.major == 9 and len(dist.sha512) == 128
    assert all("17" not in home for home in es_node.DEFAULT_JAVA_HOMES[9])


def test_es_java_home_wins(tmp_path: Path) -> None:
    """Pins that ES_JAVA_HOME (the only variable the zip's launcher honours) overrides the defaults."""
    dist = es_node.resolve_distribution({})
    assert es_node.default_java_home(dist, {"ES_JAVA_HOME": str(tmp_path)}) == tmp_path


def test_fetch_without_mvn_fails_saying_what_was_tried(tmp_path: Path, no_mvn: None) -> None:
    """Pins the clear failure when Maven is missing: the message names mvn and the exact command."""
    dist = es_node.Distribution("0.0.1", "ab" * 64)
    with pytest.raises(es_node.NodeError, match="'mvn' is not on PATH") as info:
        es_node.ensure_distribution(dist, cache_dir=tmp_path / "cache")
    assert "org.elasticsearch.distribution.integ-test-zip:elasticsearch:0.0.1:zip" in str(info.value)


def test_cli_fetch_exits_non_zero_without_mvn(
    tmp_path: Path, no_mvn: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pins ``es_node.py fetch`` exit status 1 with the reason on stderr."""
    monkeypatch.setenv("RCP_ES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RCP_ES_VERSION", "0.0.1")
    monkeypatch.setenv("RCP_ES_SHA512", "ab" * 64)
    assert es_node.main(["fetch"]) == 1
    assert "mvn" in capsys.readouterr().err


def test_cached_zip_is_verified_unpacked_once_and_reused(tmp_path: Path, no_mvn: None) -> None:
    """Pins the cache: a verified zip is unpacked with its modes, marked, and reused without re-unpacking."""
    cache = tmp_path / "cache"
    cache.mkdir()
    sha = _make_zip(cache / "elasticsearch-0.0.1.zip", "0.0.1")
    dist = es_node.Distribution("0.0.1", sha)

    home = es_node.ensure_distribution(dist, cache_dir=cache)
    assert home == cache / "elasticsearch-0.0.1"
    assert (home / "bin" / "elasticsearch").stat().st_mode & 0o777 == 0o755
    sentinel = home / "sentinel"
    sentinel.write_text("kept")
    assert es_node.ensure_distribution(dist, cache_dir=cache) == home
    assert sentinel.read_text() == "kept"


def test_corrupted_cached_zip_is_discarded(tmp_path: Path, no_mvn: None) -> None:
    """Pins that a cached zip with the wrong hash is deleted and re-fetched (here: fails, no mvn)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _make_zip(cache / "elasticsearch-0.0.1.zip", "0.0.1")
    with pytest.raises(es_node.NodeError, match="mvn"):
        es_node.ensure_distribution(es_node.Distribution("0.0.1", "ab" * 64), cache_dir=cache)
    assert not (cache / "elasticsearch-0.0.1.zip").exists()
    assert not (cache / "elasticsearch-0.0.1").exists()


def test_safe_extract_refuses_paths_outside_the_target(tmp_path: Path) -> None:
    """Pins zip-slip protection."""
    z = tmp_path / "evil.zip"
    _make_zip(z, "0.0.1", extra={"../evil.txt": "x"})
    with pytest.raises(es_node.NodeError, match="outside"):
        es_node.safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_stop_signals_only_the_nodes_own_jvm(tmp_path: Path) -> None:
    """Pins the process matching used by stop(): a bystander whose command line merely mentions the
    workdir survives; a process carrying ``-Des.path.home=<workdir>/home`` (like the node's JVM) is killed."""
    sleeper = "import time; time.sleep(60)"
    bystander = subprocess.Popen([sys.executable, "-c", sleeper, "--workdir", str(tmp_path)])
    fake_jvm = subprocess.Popen([sys.executable, "-c", sleeper, f"-Des.path.home={tmp_path / 'home'}"])
    try:
        node = es_node.RunningNode("http://127.0.0.1:1", bystander.pid, 1, workdir=tmp_path, run_dir=tmp_path)
        assert node.live_pids() == {fake_jvm.pid}
        node.stop(timeout_s=10)
        assert fake_jvm.wait(timeout=10) != 0
        assert bystander.poll() is None
        node.stop()  # idempotent
    finally:
        for proc in (bystander, fake_jvm):
            proc.kill()
            proc.wait()


def test_ancestors_traversable(tmp_path: Path) -> None:
    """Pins the relocation trigger: a 0700 parent (like /tmp/pytest-of-root) blocks the ES user."""
    assert es_node._ancestors_traversable(Path("/tmp/rcp-es-x"))
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    assert not es_node._ancestors_traversable(closed / "node")


def test_stop_keeps_logs_and_removes_a_relocated_run_dir(tmp_path: Path) -> None:
    """Pins that stopping a relocated node copies its logs into workdir and deletes the private run dir."""
    workdir, run_dir = tmp_path / "work", tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    workdir.mkdir()
    (run_dir / "logs" / "rcp-test.log").write_text("started")
    (run_dir / "launcher.out").write_text("launched")
    node = es_node.RunningNode("http://127.0.0.1:1", 0, 1, workdir=workdir, run_dir=run_dir)
    node.save()
    es_node.RunningNode.load(workdir).stop()
    assert not run_dir.exists()
    assert (workdir / "logs" / "rcp-test.log").read_text() == "started"
    assert (workdir / "launcher.out").read_text() == "launched"


def test_render_config_secure_adds_security_and_http_tls_from_the_config_dir(tmp_path: Path) -> None:
    """Pins the secure node's settings: security and HTTP TLS on, files relative to the config dir (the
    only place Elasticsearch reads them), fast file-realm reloads; the insecure settings are untouched."""
    text = es_node.render_config(9251, tmp_path / "data", tmp_path / "logs", secure=True)
    settings = dict(line.split(": ", 1) for line in text.splitlines())
    insecure = dict(
        line.split(": ", 1)
        for line in es_node.render_config(9251, tmp_path / "data", tmp_path / "logs").splitlines()
    )
    assert {key: value for key, value in settings.items() if key not in insecure} == {
        "xpack.security.http.ssl.enabled": '"true"',
        "xpack.security.http.ssl.key": '"certs/node.key"',
        "xpack.security.http.ssl.certificate": '"certs/node.crt"',
        "xpack.security.http.ssl.certificate_authorities": '["certs/ca.crt"]',
        "resource.reload.interval.high": '"1s"',
    }
    assert settings["xpack.security.enabled"] == '"true"'
    assert {
        key: value for key, value in settings.items() if key in insecure and key != "xpack.security.enabled"
    } == {key: value for key, value in insecure.items() if key != "xpack.security.enabled"}


def test_secure_state_round_trips_without_writing_the_password_into_node_json(tmp_path: Path) -> None:
    """Pins that ``stop --workdir`` finds a secure node's CA and admin login again, that the password
    stays in its own file (not node.json) and out of every repr."""
    secure_dir = tmp_path / es_node.SECURE_DIR
    secure_dir.mkdir()
    (secure_dir / "admin-password").write_text("s3cret-admin-pw\n")
    security = es_node.Security.load(secure_dir)
    node = es_node.RunningNode(
        "https://127.0.0.1:1", 0, 1, workdir=tmp_path, run_dir=tmp_path, security=security
    )
    node.save()
    assert "s3cret-admin-pw" not in (tmp_path / es_node.STATE_FILE).read_text()
    assert "s3cret-admin-pw" not in repr(node)
    loaded = es_node.RunningNode.load(tmp_path)
    assert loaded.security == es_node.Security(secure_dir / "ca.crt", "elastic", "s3cret-admin-pw")
    assert loaded.url == "https://127.0.0.1:1"


def _plugin_src(root: Path, java: str = "class A {}\n") -> Path:
    """A miniature test-plugin source tree (descriptor template + one Java file)."""
    (root / "src" / "p").mkdir(parents=True)
    (root / "plugin-descriptor.properties").write_text("name=x\nelasticsearch.version=@ES_VERSION@\n")
    (root / "src" / "p" / "A.java").write_text(java)
    return root


def test_plugin_build_key_follows_sources_and_version(tmp_path: Path) -> None:
    """Pins the plugin cache key: stable for the same sources and version, new for any change of either."""
    src = _plugin_src(tmp_path / "src")
    dist = es_node.Distribution("8.19.21", "ab" * 64)
    key = es_node.plugin_build_key(dist, src)
    assert key == es_node.plugin_build_key(dist, src)
    assert key != es_node.plugin_build_key(es_node.Distribution("8.19.22", "ab" * 64), src)
    (src / "src" / "p" / "A.java").write_text("class A { }\n")
    assert key != es_node.plugin_build_key(dist, src)


def test_the_shipped_plugin_sources_are_found_and_name_the_version_placeholder() -> None:
    """Pins that scripts/es_test_plugin has a descriptor (version filled in at build time) and Java code."""
    descriptor, *java = es_node.plugin_sources()
    text = descriptor.read_text()
    assert f"name={es_node.TEST_PLUGIN_NAME}\n" in text
    assert "elasticsearch.version=@ES_VERSION@\n" in text
    assert [path.name for path in java] == ["SecurityIndexAnalysisPlugin.java"]


def test_plugin_build_without_javac_fails_clearly(tmp_path: Path) -> None:
    """Pins NodeError (not a traceback) when ES_JAVA_HOME is a JRE: the message names the missing javac."""
    src = _plugin_src(tmp_path / "src")
    dist = es_node.Distribution("8.19.21", "ab" * 64)
    jre = tmp_path / "jre"
    (jre / "bin").mkdir(parents=True)
    with pytest.raises(es_node.NodeError, match=r"bin/javac .*must be a JDK"):
        es_node.ensure_test_plugin(dist, tmp_path / "es", jre, tmp_path / "cache", src)
    assert not list((tmp_path / "cache").glob("test-plugin-*"))


@pytest.mark.skipif(not Path(es_node.DEFAULT_JAVA_HOMES[8][0], "bin", "javac").is_file(), reason="no JDK 17")
def test_plugin_compile_error_carries_the_javac_output(tmp_path: Path) -> None:
    """Pins that a failing javac raises NodeError with its own diagnostics and leaves no cached build."""
    src = _plugin_src(tmp_path / "src", "package p;\nclass A { int broken = ; }\n")
    dist = es_node.Distribution("8.19.21", "ab" * 64)
    (tmp_path / "es" / "lib").mkdir(parents=True)
    jdk = Path(es_node.DEFAULT_JAVA_HOMES[8][0])
    with pytest.raises(es_node.NodeError, match=r"javac exit 1") as info:
        es_node.ensure_test_plugin(dist, tmp_path / "es", jdk, tmp_path / "cache", src)
    assert "A.java:2: error: illegal start of expression" in str(info.value)
    assert not list((tmp_path / "cache").glob("test-plugin-*"))
