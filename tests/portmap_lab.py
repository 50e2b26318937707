"""A port-mapping lab: two private hosts behind `masquerade fully-random` NATs whose routers run miniupnpd
(UPnP-IGD, NAT-PMP and PCP), all in network namespaces that `close()` removes (root only).

```
  priv-a (10.0.1.2) ── lan │ router-a + miniupnpd │ wan (11.0.0.1) ──┐
                                                                   br0 in pub (11.0.0.254)
  priv-b (10.0.2.2) ── lan │ router-b + miniupnpd │ wan (11.0.0.2) ──┘
```

The WAN is 11.0.0.0/24 because miniupnpd refuses to map on a reserved or private external address
(DESIGN.md "Field notes"). The agents use no STUN or TURN server: with both NATs address-and-port-dependent
(RFC 4787 4.1, 5) only a mapping asked of the gateway lets the agents meet. miniupnpd runs in the
foreground (`-d -f CONF`) on nftables tables this lab creates itself; `block(side, what)` filters a
protocol on the router's LAN side with nftables (PCP: version byte 2 on UDP 5351; NAT-PMP: version 0;
UPnP: SSDP on 1900 and its HTTP port). Processes are ended by PID, namespaces deleted, in `close()`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from netns import LAN_ROUTER, NetnsWorld

WAN = {"a": "11.0.0.1", "b": "11.0.0.2", "c": "11.0.0.3", "d": "11.0.0.4"}
PUBLIC_GATEWAY = "11.0.0.254"
HTTP_PORT = 5000
MINIUPNPD = shutil.which("miniupnpd") or "/usr/sbin/miniupnpd"
UPNPC = shutil.which("upnpc") or "/usr/bin/upnpc"

#: The nftables tables miniupnpd fills (Debian's nft_init.sh is broken: made here, named in the config).
UPNP_TABLES = """
table inet ia_upnp {
    chain forward {
        type filter hook forward priority 0; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 99; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
"""

#: What `block` filters on the router's LAN side (nftables rules of an input chain).
BLOCKS = {
    "pcp": ['iifname "lan" udp dport 5351 @th,64,8 2 drop'],
    "natpmp": ['iifname "lan" udp dport 5351 @th,64,8 0 drop'],
    "upnp": ['iifname "lan" udp dport 1900 drop', f'iifname "lan" tcp dport {HTTP_PORT} drop'],
}
BLOCKS["all"] = BLOCKS["pcp"] + BLOCKS["natpmp"] + BLOCKS["upnp"]


def miniupnpd_conf(side: str) -> str:
    return f"""ext_ifname=wan
listening_ip=lan
http_port={HTTP_PORT}
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=no
uuid=3d3cec3a-8cf0-11e0-98ee-00000000000{ord(side) - 96}
min_lifetime=120
max_lifetime=86400
upnp_table_name=ia_upnp
upnp_nat_table_name=ia_upnp
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 10.0.0.0/8 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


class PortMapWorld(NetnsWorld):
    """NetnsWorld's sites on an 11.0.0.0/24 WAN, with miniupnpd's nftables tables and miniupnpd started on
    every router (build it with `open_worlds(tmp_path, PortMapWorld)`, kinds "symmetric")."""

    wan = WAN
    public_gateway = PUBLIC_GATEWAY
    #: whether the agents `peer_argv` makes ask for port mappings
    port_mapping = True

    def peer_argv(self, side: str, *, controlling: bool, failed_timeout: float = 5.0, turn: bool = False) -> list[str]:
        """tests/netns_peer.py for `side` without a STUN server (none is used), with `--port-mapping`."""
        argv = super().peer_argv(side, controlling=controlling, failed_timeout=failed_timeout, turn=turn)
        at = argv.index("--stun")
        del argv[at : at + 2]
        return [*argv, "--port-mapping"] if self.port_mapping else argv

    def ruleset(self, side: str) -> str:
        return super().ruleset(side) + UPNP_TABLES

    def start_services(self) -> None:
        for side in self.sides:
            self.start_miniupnpd(side)

    def start_miniupnpd(self, side: str, timeout: float = 10.0) -> subprocess.Popen[bytes]:
        """miniupnpd in the foreground on router `side`; returns once its HTTP port listens."""
        directory = self.logdir / f"miniupnpd-{side}"
        directory.mkdir(exist_ok=True)
        conf = directory / "miniupnpd.conf"
        conf.write_text(miniupnpd_conf(side))
        argv = [MINIUPNPD, "-d", "-f", str(conf), "-P", str(directory / "miniupnpd.pid")]
        proc = self.start(self.router[side], argv, f"miniupnpd-{side}", stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while f":{HTTP_PORT} " not in self.exec(self.router[side], "ss", "-ltnH"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"miniupnpd on router {side} did not start:\n{self.log(f'miniupnpd-{side}')}")
            time.sleep(0.05)
        return proc

    def block(self, side: str, what: str) -> None:
        """Drop protocols' requests on router `side`'s LAN side: "pcp", "natpmp+upnp", "all" (see BLOCKS)."""
        rules = "\n        ".join(rule for part in what.split("+") for rule in BLOCKS[part])
        table = (
            "table inet ia_block {\n    chain input {\n        type filter hook input priority -10;\n"
            f"        {rules}\n    }}\n}}\n"
        )
        self.exec(self.router[side], "nft", "-f", "-", input=table)

    def upnp_rules(self, side: str) -> str:
        """miniupnpd's DNAT rules on router `side` (one per live mapping, whichever protocol made it)."""
        return self.exec(self.router[side], "nft", "list", "chain", "inet", "ia_upnp", "prerouting_miniupnpd")

    def upnpc_list(self, side: str) -> str:
        """`upnpc -l` from the private host: the IGD's port mappings as it lists them."""
        return self.exec(self.priv[side], UPNPC, "-m", "eth0", "-u",
                         f"http://{LAN_ROUTER[side]}:{HTTP_PORT}/rootDesc.xml", "-l")  # fmt: skip


def require_tools() -> None:
    for tool in (MINIUPNPD, UPNPC):
        if not Path(tool).exists():
            pytest.fail("the port-mapping lab needs miniupnpd and upnpc (apt-get install miniupnpd-nftables "
                        "miniupnpc)", pytrace=False)  # fmt: skip
