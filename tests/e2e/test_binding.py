"""The app listens on the loopback interface only, by default: `streamlit run app.py`
with no address option reads .streamlit/config.toml (`make run` also passes
--server.address localhost). The listening sockets are read from /proc, so nothing is
sent over any network."""

import ipaddress
from pathlib import Path

import pytest

from e2e_support import ROOT, running_app

LISTEN = "0A"  # TCP state code of a listening socket in /proc/net/tcp*


def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != LISTEN or int(port_hex, 16) != port:
                continue
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, width, 8))
            found.add(ipaddress.ip_address(raw))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_app_listens_on_loopback_only_by_default(tmp_path):
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "localhost"' in config
    with running_app(tmp_path, tmp_path / "store") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        addresses = listening_addresses(port)
    assert addresses and all(a.is_loopback for a in addresses), addresses
