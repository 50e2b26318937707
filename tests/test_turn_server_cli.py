"""`iceagent serve` and TURN credentials: passwords from a file or the environment, a warning for one on the
command line, shared secrets of ephemeral credentials from a file (TURN REST API), the bandwidth flag."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from pathlib import Path

import pytest
import trio
from turn_server_helpers import REALM, RawClient, iceagent_serve, turn_udp_address

from iceagent.cli import main
from iceagent.net.os import OSNetwork
from iceagent.stun import MessageClass

NET = OSNetwork()


def test_a_password_on_the_command_line_warns(capsys: pytest.CaptureFixture[str]) -> None:
    # A bad --deny-peer stops it before anything listens; the warning has been printed by then.
    assert main(["serve", "--turn", "127.0.0.1:0", "--user", "alice:secret", "--deny-peer", "nope"]) == 2
    err = capsys.readouterr().err
    assert "warning: the password of --user alice is on the command line" in err
    assert "ICEAGENT_TURN_PASSWORD" in err and "--users-file" in err and "alice:secret" not in err


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--user", "alice"], None, "has no password: set $ICEAGENT_TURN_PASSWORD"),
        (["--users-file", "{dir}/missing"], None, "cannot read it"),
        (["--users-file", "{dir}/bad"], None, "line 2: expected NAME:PASSWORD"),
        (["--users-file", "{dir}/empty"], None, "has no entries"),
        (["--auth-secret-file", "{dir}/empty"], None, "has no entries"),
        (["--user", "alice", "--relay-bandwidth", "-1"], "pw", "--relay-bandwidth must be 0"),
    ],
)
def test_bad_credential_options_exit_2(
    argv: list[str], env: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "bad").write_text("alice:secret\nbob\n")
    (tmp_path / "empty").write_text("# nothing\n\n")
    if env is None:
        monkeypatch.delenv("ICEAGENT_TURN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("ICEAGENT_TURN_PASSWORD", env)
    args = [a.format(dir=tmp_path) for a in argv]
    assert main(["serve", "--turn", "127.0.0.1:0", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


async def test_serve_with_an_env_password_a_users_file_and_ephemeral_credentials(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("# new, then old (rotation)\nnew-secret\nold-secret\n")
    users = tmp_path / "users"
    users.write_text("carol:from-file\n")
    env = {**os.environ, "ICEAGENT_TURN_PASSWORD": "from-env"}
    args = ["--turn", "127.0.0.1:0", "--user", "bob", "--users-file", str(users), "--auth-secret-file", str(secrets),
            "--allow-loopback-peers", "--relay-bandwidth", "0", "--realm", REALM]
    ephemeral = f"{int(time.time()) + 600}:dave"
    old_password = base64.b64encode(hmac.new(b"old-secret", ephemeral.encode(), hashlib.sha1).digest()).decode()
    with trio.fail_after(30):
        async with iceagent_serve(*args, env=env) as run:
            assert "TURN ephemeral credentials with 2 shared secret(s)" in run.lines, run.lines
            address = turn_udp_address(run.lines)
            for user, password in [("bob", "from-env"), ("carol", "from-file"), (ephemeral, old_password),
                                   ("bob", "wrong")]:
                sock = await NET.bind_udp("127.0.0.1", 0)
                try:
                    response = await RawClient(sock, address, user=user, password=password).allocate()
                finally:
                    sock.close()
                expected = MessageClass.ERROR if password == "wrong" else MessageClass.SUCCESS
                assert response.message_class is expected, (user, response)
    assert b"warning" not in run.stderr and b"stopped" in run.stderr  # no password was on the command line
