"""The controller refuses settings that would put its token on the network in clear."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ferry.service.settings import Settings

TOKEN = "t" * 32


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_plain_http_on_loopback_is_fine(host: str) -> None:
    assert Settings(token=TOKEN, listen_host=host).tls_cert_file is None


@pytest.mark.parametrize("host", ["0.0.0.0", "198.18.0.1", "::", "ferry.example"])
def test_plain_http_beyond_loopback_needs_tls_or_an_explicit_yes(host: str) -> None:
    with pytest.raises(ValidationError, match="plain HTTP"):
        Settings(token=TOKEN, listen_host=host)
    Settings(token=TOKEN, listen_host=host, tls_cert_file="c.pem", tls_key_file="k.pem")
    Settings(token=TOKEN, listen_host=host, allow_plain_http=True)


def test_tls_files_go_together() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(token=TOKEN, tls_cert_file="c.pem")
    with pytest.raises(ValidationError, match="mutual TLS is TLS first"):
        Settings(token=TOKEN, tls_client_ca_file="ca.pem")
