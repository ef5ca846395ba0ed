"""The security core (no gRPC): key files, roles, constant-time lookup, the binding rule."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest

from imagesim.security import (
    ApiKeys,
    KeyFile,
    KeyFileError,
    Role,
    bearer_token,
    check_exposure,
    is_loopback,
    required_role,
)

READ_KEY = "r" * 20
ADMIN_KEY = "a" * 32


def test_key_file_roles_comments_and_hashed_keys():
    admin_hash = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    keys = ApiKeys.parse(f"# keys\n\nread {READ_KEY}  # reader\nADMIN sha256:{admin_hash}\n")
    assert len(keys) == 2
    assert keys.role_of(READ_KEY) is Role.READ
    assert keys.role_of(ADMIN_KEY) is Role.ADMIN
    assert keys.role_of(f"sha256:{admin_hash}") is None  # the hash is not a key
    assert keys.role_of("x" * 20) is None and keys.role_of("") is None
    assert keys.role_of(None) is None
    assert READ_KEY not in repr(keys) and READ_KEY not in repr(keys._entries)


@pytest.mark.parametrize(
    "text, message",
    [
        ("reader " + READ_KEY, "line 1: unknown role 'reader'"),
        ("read", "line 1: expected `ROLE KEY`, found 1 fields"),
        ("read short", "shorter than 16 characters"),
        ("admin sha256:abc", "64 hex digits"),
        (f"read {READ_KEY}\nwrite {READ_KEY}", "line 2: the same key as line 1"),
        ("# nothing\n", "no keys"),
    ],
)
def test_bad_key_files_name_the_line_never_the_key(text, message):
    with pytest.raises(KeyFileError, match=message) as error:
        ApiKeys.parse(text)
    assert READ_KEY not in str(error.value)


def test_key_file_follows_edits_and_keeps_old_keys_when_the_new_file_is_bad(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"read {READ_KEY}\n")
    keys = KeyFile(path, check_seconds=0)
    assert keys.role_of(READ_KEY) is Role.READ
    path.write_text(f"admin {ADMIN_KEY}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert keys.role_of(READ_KEY) is None and keys.role_of(ADMIN_KEY) is Role.ADMIN
    path.write_text("admin tooshort\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert keys.role_of(ADMIN_KEY) is Role.ADMIN


def test_roles_and_methods():
    assert Role.ADMIN.allows(Role.WRITE) and Role.WRITE.allows(Role.READ)
    assert not Role.READ.allows(Role.WRITE)
    assert required_role("/imagesim.v1.Index/Scan") is Role.READ
    assert required_role("/imagesim.v1.Index/SetLayout") is Role.ADMIN
    assert required_role("/imagesim.v1.Embedder/EmbedStream") is Role.READ
    assert required_role("/imagesim.v1.Index/SomethingNew") is Role.ADMIN  # closed by default
    assert required_role("/grpc.health.v1.Health/Check") == "open"


def test_bearer_token():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None and bearer_token(None) is None


def test_non_loopback_binding_needs_tls_and_authentication_or_insecure():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert check_exposure("127.0.0.1", tls=False, authenticated=False, insecure=False) is None
    assert check_exposure("0.0.0.0", tls=True, authenticated=True, insecure=False) is None
    assert check_exposure("0.0.0.0", tls=False, authenticated=False, insecure=True) is None
    refusal = check_exposure("0.0.0.0", tls=True, authenticated=False, insecure=False)
    assert refusal is not None and "--insecure" in refusal and "--api-keys" in refusal
    assert "--tls-cert" not in refusal


def test_the_security_core_imports_no_grpc():
    """The web server reuses it without gRPC."""
    code = (
        "import sys, imagesim.security; assert not any(m.startswith('grpc') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
