import pytest

from ferry.domain.names import check_cephx_key, check_monitor, check_name, check_path, check_uri
from ferry.errors import InvalidRequest


@pytest.mark.parametrize("name", ["web1", "a", "node-2", "x" * 32])
def test_valid_names(name: str) -> None:
    assert check_name("vm", name) == name


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "web.1", "Web1", "1web", "-a", "a-",
                                  "x" * 33, "a b", "a;rm", "é", "web1\n", "\nweb1"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_name("vm", name)


@pytest.mark.parametrize("uri", ["qemu+tcp://198.18.0.11/system", "qemu:///system",
                                 "qemu+tls://host.example/system",
                                 "qemu+tcp://[fd00::1]:16509/system",
                                 "qemu+ssh://root@h1/system?no_tty=1"])
def test_valid_uris(uri: str) -> None:
    assert check_uri(uri) == uri


@pytest.mark.parametrize("uri", ["http://x/system", "qemu+tcp://h/session", "qemu+tcp://h/system;x",
                                 "xen:///system", "", "qemu+tcp://h/system\n",
                                 "qemu+tcp://h/system?=1", "qemu+tcp://h/system?&"])
def test_invalid_uris(uri: str) -> None:
    with pytest.raises(InvalidRequest):
        check_uri(uri)


@pytest.mark.parametrize("param", ["command=/usr/bin/id", "netcat=/bin/nc", "socket=/tmp/s",
                                   "keyfile=/root/.ssh/id_rsa", "no_verify=1", "pkipath=/tmp",
                                   "known_hosts=/tmp/k", "known_hosts_verify=ignore",
                                   "proxy=netcat", "no_tty=1&command=/bin/x"])
def test_uri_parameters_outside_the_allow_list_are_refused_by_name(param: str) -> None:
    with pytest.raises(InvalidRequest, match="is not allowed"):
        check_uri(f"qemu+ssh://root@h1/system?{param}")


@pytest.mark.parametrize("path", ["/etc\n", "/srv/x\n", "/srv/../etc", "/srv//x", "srv"])
def test_paths_are_matched_whole(path: str) -> None:
    with pytest.raises(InvalidRequest):
        check_path(path)


@pytest.mark.parametrize("check, value", [(check_monitor, "mon1:6789\n"),
                                          (check_cephx_key, "A" * 40 + "\n")])
def test_ceph_values_are_matched_whole(check: object, value: str) -> None:
    with pytest.raises(InvalidRequest):
        check(value)  # type: ignore[operator]
    assert check(value.strip())  # type: ignore[operator]
