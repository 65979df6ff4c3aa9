import pytest

from ferry.domain.names import check_name, check_uri
from ferry.errors import InvalidRequest


@pytest.mark.parametrize("name", ["web1", "a", "node-2", "x" * 32])
def test_valid_names(name: str) -> None:
    assert check_name("vm", name) == name


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "web.1", "Web1", "1web", "-a", "a-",
                                  "x" * 33, "a b", "a;rm", "é"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_name("vm", name)


@pytest.mark.parametrize("uri", ["qemu+tcp://198.18.0.11/system", "qemu:///system",
                                 "qemu+tls://host.example/system",
                                 "qemu+ssh://root@h1/system?keyfile=/k"])
def test_valid_uris(uri: str) -> None:
    assert check_uri(uri) == uri


@pytest.mark.parametrize("uri", ["http://x/system", "qemu+tcp://h/session", "qemu+tcp://h/system;x",
                                 "xen:///system", ""])
def test_invalid_uris(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        check_uri(uri)
