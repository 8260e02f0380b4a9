"""Helpers shared by the Redis backend's tests (imported by name: the
conftest puts this directory on ``sys.path``).

The tests talk to the real Redis at ``127.0.0.1:6379`` (db 0; override with
``SWARMGATE_TEST_REDIS_URL``), each under a namespace of its own
(``swarmgate-test:<random>:``) that is removed afterwards. The tests of
passwords, TLS and restarts start a private ``redis-server`` of their own
(:class:`PrivateRedis`).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
import trustme

URL = os.environ.get("SWARMGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A loopback port nothing listens on (connections are refused at once).
DEAD_URL = "redis://:hunter2-secret-pw@127.0.0.1:1/0"


@functools.cache
def _probe(url: str) -> str | None:
    """``None`` if Redis answers at ``url``, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def require_redis() -> str:
    """The test Redis's URL; skips the test, saying why, when none answers."""
    error = _probe(URL)
    if error is not None:
        pytest.skip(f"needs Redis at 127.0.0.1:6379: {error}")
    return URL


def unique_prefix() -> str:
    """A key namespace no other test (or test run) uses."""
    return f"swarmgate-test:{uuid.uuid4().hex[:16]}:"


def raw_keys(url: str, prefix: str) -> list[str]:
    """Every Redis key under ``prefix``, sorted (a plain client, not the store)."""
    client = redis.Redis.from_url(url)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()


def remove_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    names = raw_keys(url, prefix)
    if names:
        client = redis.Redis.from_url(url)
        try:
            client.unlink(*names)
        finally:
            client.close()


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free loopback port, without
    persistence: optionally with a password (``requirepass``) or TLS only
    (certificates from a trustme CA). :meth:`restart` stops and starts it on
    the same port (its data is gone, as after a crash without persistence)."""

    def __init__(self, workdir: Path, *, password: str | None = None, ca: trustme.CA | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("needs the redis-server binary on PATH to start a private Redis (password, TLS, restart)")
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.ca = ca
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if ca is not None:
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self.cert_file = workdir / "server.pem"
            self.key_file = workdir / "server.key"
            self.ca_file = workdir / "ca.pem"
            cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
            cert.private_key_pem.write_to_path(str(self.key_file))
            ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def url(self) -> str:
        """The URL of the server (with its password, and for TLS its CA)."""
        auth = f":{self.password}@" if self.password else ""
        if self.ca is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.ca is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.cert_file), "--tls-key-file", str(self.key_file)]
            args += ["--tls-ca-cert-file", str(self.ca_file)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + 10.0
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.RedisError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
