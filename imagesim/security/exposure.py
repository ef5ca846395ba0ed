"""The safe-binding rule: a server reachable from other hosts must encrypt and authenticate."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for addresses only this host can reach (127.0.0.0/8, ::1, localhost).
    A name other than localhost counts as reachable: it may resolve anywhere."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tls: bool, authenticated: bool, insecure: bool) -> str | None:
    """None if serving on `host` is acceptable, else the one-line reason to refuse.

    `authenticated`: callers must prove who they are (API keys or client certificates)."""
    if insecure or is_loopback(host) or (tls and authenticated):
        return None
    missing = " and ".join(
        what
        for what, ok in (
            ("TLS (--tls-cert/--tls-key)", tls),
            ("caller authentication (--api-keys or --tls-client-ca)", authenticated),
        )
        if not ok
    )
    return (
        f"refusing to serve on {host} without {missing}: anyone who can reach the port could "
        "read and change the data; configure them, or pass --insecure on a trusted network"
    )
