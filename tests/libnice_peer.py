"""A libnice ICE peer driven over stdin/stdout with JSON lines (for ICE-TCP interop tests against iceagent).

Runs under Debian's own `/usr/bin/python3` with `python3-gi` and `gir1.2-nice-0.1` (the project's Python
cannot import Debian's `gi`): `/usr/bin/python3 tests/libnice_peer.py --controlled --tcp-only`.
Gathering is restricted to 127.0.0.1 (and 127.0.0.2 with `--second-address`; `add_local_address`;
UPnP off, no STUN/TURN server), so nothing leaves loopback. `--renomination` sets
NICE_AGENT_OPTION_SUPPORT_RENOMINATION (with regular nomination). `nice_agent_attach_recv` and
`nice_agent_send` are not usable through GObject introspection (a callback with a raw buffer; binary
data), so both are called through ctypes on
libnice.so.10, with the agent pointer from its GObject capsule; a GLib main loop runs everything.

Output lines (JSON objects with "event"):
- `{"event": "local", "ufrag", "pwd", "lite", "candidates": [sdp, ...]}` once gathering is done (first line;
  `lite` with `--lite`, NICE_AGENT_OPTION_LITE_MODE);
- `{"event": "connected", "state": str, "pair": {"local": sdp, "remote": sdp}}` when the component is
  READY (nomination concluded), or `{"event": "failed", "error": str}`;
- `{"event": "sent", "count": n, "echoes": [hex, ...]}` after a `send` command;
- `{"event": "stats", "received": n, "echoed": n, "pair": {...} | null}`; `{"event": "closed"}` at exit;
  `{"event": "error", "error": str}` for a command it cannot carry out.

Commands (JSON objects with "cmd"): `remote` (ufrag, pwd); `candidate` (sdp, or null for
end-of-candidates); `send` (data: [hex, ...]; the other side echoes them, and they are collected instead
of echoed); `stats`; `close` (end of stdin closes too). Every datagram received otherwise is echoed back.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
from typing import Any

import gi

gi.require_version("Nice", "0.1")
from gi.repository import GLib, Nice  # noqa: E402

_lib = ctypes.CDLL("libnice.so.10")
_RECV_FUNC = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_char), ctypes.c_void_p
)
_lib.nice_agent_attach_recv.argtypes = [
    ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, _RECV_FUNC, ctypes.c_void_p
]
_lib.nice_agent_attach_recv.restype = ctypes.c_int
_lib.nice_agent_send.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_char_p]
_lib.nice_agent_send.restype = ctypes.c_int
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

_STATES = {
    Nice.ComponentState.DISCONNECTED: "disconnected",
    Nice.ComponentState.GATHERING: "gathering",
    Nice.ComponentState.CONNECTING: "connecting",
    Nice.ComponentState.CONNECTED: "connected",
    Nice.ComponentState.READY: "ready",
    Nice.ComponentState.FAILED: "failed",
}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Peer:
    def __init__(
        self,
        controlling: bool,
        udp: bool,
        tcp: bool,
        lite: bool = False,
        renomination: bool = False,
        addresses: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.loop = GLib.MainLoop()
        self.lite = lite
        context, compatibility = GLib.MainContext.default(), Nice.Compatibility.RFC5245
        if lite:  # NICE_AGENT_OPTION_LITE_MODE: an ICE-lite agent (RFC 8445 2.5), which must be controlled
            self.agent = Nice.Agent.new_full(context, compatibility, Nice.AgentOption.LITE_MODE)
        elif renomination:  # follows the NOMINATION attribute (draft-thatcher-ice-renomination)
            options = Nice.AgentOption.SUPPORT_RENOMINATION | Nice.AgentOption.REGULAR_NOMINATION
            self.agent = Nice.Agent.new_full(context, compatibility, options)
        else:
            self.agent = Nice.Agent.new(context, compatibility)
        self.agent.set_property("controlling-mode", controlling)
        self.agent.set_property("ice-udp", udp)
        self.agent.set_property("ice-tcp", tcp)
        self.agent.set_property("upnp", False)
        for ip in addresses:
            address = Nice.Address.new()
            address.set_from_string(ip)
            self.agent.add_local_address(address)
        self.stream = self.agent.add_stream(1)
        self.pointer = _capsule_pointer(self.agent.__gpointer__, None)
        self.received = 0
        self.echoed = 0
        self.collecting: list[bytes] | None = None
        self.expected = 0
        self.reported = False
        self.selected: dict[str, str] | None = None
        self._stdin = b""
        self._recv = _RECV_FUNC(self._on_data)  # keep a reference: libnice calls it
        if not _lib.nice_agent_attach_recv(self.pointer, self.stream, 1, None, self._recv, None):
            raise SystemExit("nice_agent_attach_recv failed")
        self.agent.connect("candidate-gathering-done", self._gathered)
        self.agent.connect("component-state-changed", self._state_changed)
        self.agent.connect("new-selected-pair-full", self._selected)
        channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
        GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, self._on_stdin)

    # ---- libnice callbacks ----

    def _gathered(self, agent: Any, stream: int) -> None:
        _ok, ufrag, pwd = agent.get_local_credentials(stream)
        lines = [agent.generate_local_candidate_sdp(c) for c in agent.get_local_candidates(stream, 1)]
        emit("local", ufrag=ufrag, pwd=pwd, lite=self.lite, candidates=[line.removeprefix("a=") for line in lines])

    def _selected(self, agent: Any, stream: int, component: int, local: Any, remote: Any) -> None:
        # nice_agent_get_selected_pair's out-parameters are not introspectable: keep what the signal says
        sdp = agent.generate_local_candidate_sdp
        self.selected = {"local": sdp(local).removeprefix("a="), "remote": sdp(remote).removeprefix("a=")}

    def _pair(self) -> dict[str, str] | None:
        return self.selected

    def _state_changed(self, agent: Any, stream: int, component: int, state: int) -> None:
        name = _STATES.get(state, str(state))
        if name == "ready" and not self.reported:
            self.reported = True
            emit("connected", state=name, pair=self._pair())
        elif name == "failed" and not self.reported:
            self.reported = True
            emit("failed", error="libnice component FAILED")

    def _on_data(self, _agent: Any, stream: int, component: int, length: int, buf: Any, _data: Any) -> None:
        data = ctypes.string_at(buf, length)
        self.received += 1
        if self.collecting is not None:
            self.collecting.append(data)
            if len(self.collecting) >= self.expected:
                echoes, self.collecting = self.collecting, None
                emit("sent", count=self.expected, echoes=[e.hex() for e in echoes])
            return
        self._send(data)
        self.echoed += 1

    def _send(self, data: bytes) -> int:
        return int(_lib.nice_agent_send(self.pointer, self.stream, 1, len(data), data))

    # ---- commands ----

    def _on_stdin(self, channel: Any, condition: Any) -> bool:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            self.close()
            return False
        self._stdin += chunk
        while b"\n" in self._stdin:
            line, _, self._stdin = self._stdin.partition(b"\n")
            if line.strip():
                try:
                    self.command(json.loads(line))
                except Exception as exc:  # report it to the test, keep serving
                    emit("error", error=f"{type(exc).__name__}: {exc}")
        return True

    def command(self, msg: dict[str, Any]) -> None:
        cmd = msg["cmd"]
        if cmd == "remote":
            self.agent.set_remote_credentials(self.stream, msg["ufrag"], msg["pwd"])
        elif cmd == "candidate":
            sdp = msg["sdp"]
            if sdp is None:
                self.agent.peer_candidate_gathering_done(self.stream)
                return
            line = sdp.strip()
            if not line.startswith("a="):
                line = "a=" + line
            cand = self.agent.parse_remote_candidate_sdp(self.stream, line)
            if cand is None:
                raise ValueError(f"libnice cannot parse {line!r}")
            self.agent.set_remote_candidates(self.stream, 1, [cand])
        elif cmd == "send":
            payloads = [bytes.fromhex(h) for h in msg["data"]]
            self.collecting, self.expected = [], len(payloads)
            for data in payloads:
                if self._send(data) != len(data):
                    raise OSError(f"nice_agent_send could not send {len(data)} bytes")
        elif cmd == "stats":
            emit("stats", received=self.received, echoed=self.echoed, pair=self._pair())
        elif cmd == "close":
            self.close()
        else:
            raise ValueError(f"unknown command {cmd!r}")

    def close(self) -> None:
        emit("closed")
        GLib.timeout_add(100, self.loop.quit)

    def run(self) -> None:
        if not self.agent.gather_candidates(self.stream):
            raise SystemExit("libnice could not gather candidates")
        self.loop.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", action="store_true")
    role.add_argument("--controlled", action="store_true")
    parser.add_argument("--tcp-only", action="store_true", help="ICE-TCP candidates only (ice-udp off)")
    parser.add_argument("--lite", action="store_true", help="ICE-lite mode (NICE_AGENT_OPTION_LITE_MODE)")
    parser.add_argument(
        "--renomination", action="store_true", help="NICE_AGENT_OPTION_SUPPORT_RENOMINATION (regular nomination)"
    )
    parser.add_argument(
        "--second-address", action="store_true", help="gather on 127.0.0.2 too (a second pair on each side)"
    )
    args = parser.parse_args()
    addresses = ("127.0.0.1", "127.0.0.2") if args.second_address else ("127.0.0.1",)
    Peer(
        controlling=args.controlling,
        udp=not args.tcp_only,
        tcp=True,
        lite=args.lite,
        renomination=args.renomination,
        addresses=addresses,
    ).run()


if __name__ == "__main__":
    main()
