"""The lab's PKI: certificates a real TLS handshake accepts (and refuses), done in
memory (ssl.MemoryBIO: no socket, nothing started)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from ferry.lab.pki import Pair, issue, new_authority, write_authority, write_pair


def _handshake(server: ssl.SSLObject, client: ssl.SSLObject,
               sin: ssl.MemoryBIO, sout: ssl.MemoryBIO,
               cin: ssl.MemoryBIO, cout: ssl.MemoryBIO) -> None:
    done = {"s": False, "c": False}
    for _ in range(20):
        for name, obj in (("c", client), ("s", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        sin.write(cout.read())
        cin.write(sout.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def _contexts(tmp: Path, srv: Pair, cli: Pair, ca_pem: bytes
              ) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    write_pair(srv, tmp / "s.pem", tmp / "s.key")
    write_pair(cli, tmp / "c.pem", tmp / "c.key")
    (tmp / "ca.pem").write_bytes(ca_pem)
    s = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    s.load_cert_chain(tmp / "s.pem", tmp / "s.key")
    s.verify_mode = ssl.CERT_REQUIRED
    s.load_verify_locations(tmp / "ca.pem")
    c = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    c.load_cert_chain(tmp / "c.pem", tmp / "c.key")
    return s, c


def _connect(s: ssl.SSLContext, c: ssl.SSLContext, host: str) -> None:
    sin, sout, cin, cout = (ssl.MemoryBIO() for _ in range(4))
    server = s.wrap_bio(sin, sout, server_side=True)
    client = c.wrap_bio(cin, cout, server_hostname=host)
    _handshake(server, client, sin, sout, cin, cout)


def test_a_host_certificate_is_accepted_for_its_address_with_a_client_certificate(
        tmp_path: Path) -> None:
    ca = new_authority()
    srv = issue(ca, "node1", dns=("node1",), ips=("198.18.0.11",), server=True, client=True)
    cli = issue(ca, "ferry-controller", client=True)
    s, c = _contexts(tmp_path, srv, cli, ca.cert_pem)
    _connect(s, c, "198.18.0.11")
    _connect(s, c, "node1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _connect(s, c, "198.18.0.12")  # another host's address


def test_a_certificate_of_another_authority_is_refused(tmp_path: Path) -> None:
    ca, other = new_authority(), new_authority("someone else")
    srv = issue(ca, "node1", ips=("198.18.0.11",), server=True)
    stranger = issue(other, "intruder", client=True)
    s, c = _contexts(tmp_path, srv, stranger, ca.cert_pem)
    with pytest.raises(ssl.SSLError):
        _connect(s, c, "198.18.0.11")


def test_keys_are_private_and_a_certificate_is_for_something(tmp_path: Path) -> None:
    cert, key = write_authority(new_authority(), tmp_path / "ca")
    assert key.stat().st_mode & 0o077 == 0  # the CA's key: its owner only
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(ValueError):
        issue(new_authority(), "nothing")
