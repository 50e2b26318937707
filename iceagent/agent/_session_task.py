"""The session task of a SessionRunner: timers, wake-ups and its first OS UDP socket in one task.

An idle agent in the default set-up (one host UDP socket) costs its Trio run one task: the session task
pumps the generation (SessionRunner.pump), sleeps until the next timer (the deadline of one cancel scope,
`_sleep`) and meanwhile waits on its first OS UDP socket itself, handling each batch as a receive task
would (ReceivePath._on_datagrams: a check is answered in the step that read it). Other transports
(further sockets, TURN, ICE-TCP, a mux, plugins) keep a receive task each. A wake-up from another task
(a gatherer, another transport's input, the agent's state) ends the wait on the socket by an empty datagram
the socket sends itself (`_alert`; cancelling the wait measured 20% more CPU for 1000 pairs connecting), with
a fallback deadline only when that datagram is not queued on the socket yet (`_queued`); one while the task
is busy or waits on its Wakeup only sets the Wakeup. Signalling (Agent.set_remote_parameters,
add_remote_candidate) sends no such datagram while the task waits on its socket or mux inbox: the
application's task does the session task's turn itself at the end of the call (`hold`/`release`: read what
the socket holds and handle it, pump, move the timer), so the first check leaves in that call and the
session task takes no step for it (1000 pairs connecting: 1.5 steps fewer per agent, 6% less CPU); not with
an observer hook (hooks run in the agent's tasks), and a bug met there is raised by the session task. While
the stream's reader holds the socket (agent/_tap.py) the task waits on its Wakeup, which is also the Tap's
kick, under the Tap's park deadline, inside its timer's scope.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from ..gatherers.base import CandidateTransport
from ..net.base import Address
from ._receive import ReceivePath, tappable

#: At most this many datagrams per batch the session task reads (as a receive task's `receive_batch`).
RECEIVE_BATCH = 64

#: Seconds after which a wake-up whose datagram to the session task's own socket did not arrive (a firewall
#: that drops it) ends the wait by the scope's deadline instead; that runner then wakes by cancelling.
SELF_WAKE_TIMEOUT = 0.5

#: What the session task does after a turn on its mux inbox (`_serve_inbox`).
_PUMP, _HANDLED, _WAIT = 0, 1, 2

if TYPE_CHECKING:
    from ..ice.generation import IceGeneration
    from ._notify import Wakeup


class SessionTask(ReceivePath):
    """The session task's loop and its wake-ups (SessionRunner sets these attributes)."""

    __slots__ = (
        "_crash",
        "_fallback_at",
        "_held",
        "_holding",
        "_inbox",
        "_looked",
        "_observed",
        "_own_batch",
        "_poked",
        "_polling",
        "_self_wake",
        "_sending",
        "_served",
        "_sleep",
        "_woke_self",
    )

    closed: bool
    gen: IceGeneration
    _outbox: list[tuple[CandidateTransport, bytes, Address]]
    _wakeup: Wakeup

    def __init__(self) -> None:
        self._sleep: trio.CancelScope | None = None  # the session task's wait, while it waits
        self._sending: trio.CancelScope | None = None  # the session task's sends of the outbox, while it sends
        self._served: CandidateTransport | None = None  # the OS UDP socket (or mux inbox) the session task serves
        self._inbox = False  # `_served` is a mux address's inbox (agent/net/_mux_agent.py), not a socket
        self._polling = False  # the session task waits on that socket (a wake-up sends it a datagram)
        self._self_wake = True  # wake it by a datagram to its socket (False: by cancelling `_sleep`)
        self._woke_self = False  # such a datagram is on its way
        self._fallback_at = math.inf  # the deadline that stands in for it, should it be lost
        #: the session task handles a batch of its own socket: a pump for its STUN answers every wake-up so far
        self._own_batch = False
        self._holding = False  # a signalling call runs: its wake-ups wait for `release` (they set `_held`)
        self._held = False
        self._looked = False  # one of those wake-ups was `look` (the agent's supervisor must see a change)
        #: an observer hook is registered (hooks run in the agent's own tasks: no turn in `release`); set by the runner
        self._observed = False
        self._poked = False  # `_poke` pumped (since `release` cleared it)
        self._crash: Exception | None = None  # a bug met in `release`'s turn: the session task raises it

    def pump(self, now: float, due: bool = True) -> float:
        raise NotImplementedError

    def _alert(self) -> None:
        """Have the session task pump soon: set its Wakeup and, if it waits on its socket, end that wait (once,
        however many wake-ups come before it runs) by an empty datagram to the socket itself (no Cancelled:
        a Cancelled, a new scope and epoll's re-arming cost more than a datagram on the host's loopback),
        within SELF_WAKE_TIMEOUT by the scope's deadline should that datagram be lost (no such deadline when
        the scope's own comes first, nor once the datagram is queued on the socket, as it is when sendto
        returns on loopback: nothing can lose it then, and moving a Trio deadline costs a heap entry that
        lives until the deadline passes); else by a cancel."""
        self._wakeup.set()
        if not self._polling:
            return
        self._polling = False
        if self._inbox:  # the mux's inbox: end the wait by rescheduling the task (no datagram, no Cancelled)
            served: Any = self._served
            served.wake_receiver()
            return
        sleep = self._sleep
        assert sleep is not None
        deadline = sleep.deadline
        # (its timer fired already, or close() cancelled it: it wakes anyway, and no datagram is left behind;
        # read here from the deadline and `closed`, not `cancel_called`, which reads the clock again)
        if self.closed:
            return
        now = None if deadline == math.inf else trio.current_time()
        if now is not None and now >= deadline:
            return
        if self._self_wake and self._send_self():
            self._woke_self = True
            # no deadline stands in for it when its own timer is due first (no peek needed then either), or
            # when it is on the socket already (on loopback, as sendto returns): the wait ends (no heap entry)
            if (now is not None and now + SELF_WAKE_TIMEOUT >= deadline) or self._queued():
                self._fallback_at = math.nan
                return
            sleep.deadline = self._fallback_at = (trio.current_time() if now is None else now) + SELF_WAKE_TIMEOUT
        else:
            sleep.cancel()

    def hold(self) -> None:
        """A signalling call from the application starts: its wake-ups wait for `release` (no datagram each)."""
        self._holding = True

    def release(self) -> None:
        """The signalling call ends: if it woke the session, do the session task's turn here, in the caller's
        task, when that task waits on its own OS socket or mux inbox: first, if the session has something to
        send now, what the socket holds (a check that came before the signalling is answered before this
        agent's own first check, so the check it triggers is the agent's first, RFC 8445 7.3.1.4, as when the
        session task reads it first), then a pump
        (the checks the new candidates made due leave now), then its timer moves. Otherwise (busy, a Tap,
        another transport) the wake-up goes to the session task as usual.

        With nothing due now (no events, the generation's timer not passed) a call the agent's supervisor
        need not see (no `look`: end-of-candidates, a candidate that pairs with nothing yet) takes no pump at
        all, only an earlier timer; one it must see (the state going to CHECKING) pumps without asking the
        generation for timers and packets (`pump(now, due=False)`)."""
        if not self._held:
            self._holding = False
            return
        self._held = False
        looked = self._looked
        self._looked = False
        sock: Any = self._served
        # observer hooks run in the agent's own tasks, with the contextvars of the code that opened it
        # (docs/agent.md): with an observer the turn stays the session task's
        if self.closed or not self._polling or self._observed or (not self._inbox and sock.tap is not None):
            self._holding = False
            self.wake()  # type: ignore[attr-defined]
            return
        # a bug met anywhere in this turn is the session's: it ends the agent from its session task, as it would
        # have there, and is not raised into the application's signalling call
        try:
            gen = self.gen
            now = trio.current_time()
            timer = gen.get_timer()
            due = bool(gen.events) or timer <= now
            if not due and not looked:
                # what the call changed is the generation's alone and nothing of it is due: no pump, no read
                # (what the socket holds stays for the session task); an earlier timer moves the task's (a later
                # one can wait: the task then wakes early, pumps and finds nothing due)
                self._holding = False
                sleep = self._sleep
                if sleep is not None and timer < sleep.deadline:
                    self._move_timer(timer)
                return
            items: list[tuple[bytes, Address]] = []
            # with nothing for this generation to send now (parameters without candidates) what the socket
            # holds need not come first: it stays for the session task (no read that finds nothing)
            if due:
                try:
                    if self._inbox:
                        sock.route_waiting()
                    items = sock.receive_now(RECEIVE_BATCH)
                except (trio.ClosedResourceError, OSError):
                    self._holding = False
                    self._alert()  # the session task finds out itself
                    return
            self._wakeup.flag = False  # (this turn answers every wake-up so far; still holding: none are sent)
            if items and self._woke_self:
                items = self._without_self_wake(items)
            if items:
                self._poked = False
                self._on_datagrams(sock, items)  # STUN in it pumps (`_poke`), after this call's changes
                if self._poked and not self._held:  # that pump was this turn's (and it moved the timer)
                    self._holding = False
                    return
                now = trio.current_time()
            deadline = self.pump(now, due)
        except Exception as exc:
            self._holding = self._held = self._looked = False
            self._crash = exc
            self._alert()
            return
        self._holding = False
        if self._held:  # (handling the batch woke it outside a pump)
            self._held = self._looked = False
            self._alert()
            return
        self._move_timer(deadline)

    def _send_self(self) -> bool:
        """The wake-up datagram, sent now; False when the socket did not take it (any error: cancel instead)."""
        t: Any = self._served
        try:
            t.sync_sendto(b"", t.local_address)
        except OSError:
            return False
        return True

    def _queued(self) -> bool:
        """Whether a datagram (the wake-up's, or any other) is queued on the served socket now: epoll then
        reports it readable and the session task's wait ends, so the wake-up needs no fallback deadline."""
        queued = getattr(self._served, "queued", None)
        return queued is not None and bool(queued())

    def _without_self_wake(self, items: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        """The batch without the empty datagram(s) `_alert` sent to the socket itself (found and taken out by
        the list's own methods, in C)."""
        t: Any = self._served
        wake = (b"", t.local_address)
        if wake in items:
            self._woke_self = False
            while wake in items:
                items.remove(wake)
        return items

    def _poke(self, now: float) -> None:
        """STUN input arrived (in a receive task, or the session task from its socket): do now what it made due
        (its answer, a triggered check, nomination, the agent's reaction), without another round of the
        session task. Then move the session task's timer to when the next pump is due, earlier or later (a
        timer that no longer has anything to do, such as a retransmission whose answer just came, would
        cost a Cancelled for nothing), or, for "at once", alert it."""
        if self.closed:
            return
        self._poked = True  # (for `release`)
        if self._own_batch:  # in the session task: this pump answers every wake-up so far (see _drive)
            self._wakeup.flag = False
        self.owner.heard()
        self._move_timer(self.pump(now))

    def _move_timer(self, deadline: float) -> None:
        """The next pump is due at `deadline`: move the session task's timer there (-inf, "at once": alert it)."""
        if deadline == -math.inf:
            self._alert()
            return
        sleep = self._sleep
        if sleep is not None and deadline != sleep.deadline:
            if self._woke_self:  # keep the wake-up's fallback: the session task pumps soon anyway
                deadline = min(deadline, sleep.deadline)
            sleep.deadline = deadline

    def _serve(self, transport: CandidateTransport) -> bool:
        """Take `transport` as the session task's own if it has none: an OS UDP socket (a descriptor to wait on,
        `receive_now`, and a Tap's methods) or a mux address's inbox (`receive_now`, `wait_receivable`,
        `wake_receiver`: the mux wakes the session task itself, net/_mux_inbox.py)."""
        if self._served is not None or self.closed:
            return False
        if hasattr(transport, "wait_receivable") and hasattr(transport, "route_waiting"):  # a mux address's view
            self._inbox = True
        elif not hasattr(transport, "fileno") or not tappable(transport):
            return False
        self._served = transport
        if not self._inbox:
            # a link-local IPv6 address needs a scope id to send to (its local_address has none): wake by a cancel
            t: Any = transport
            # and on a wildcard socket the datagram would come from another address (127.0.0.1, ::1): cancel too
            host = t.local_address[0].lower()
            self._self_wake = not host.startswith("fe80:") and host not in ("0.0.0.0", "::")
        self._alert()
        return True

    def _stop_serving(self) -> None:
        """The session task no longer serves its socket (it failed, or the session ends): a reader waiting on
        it looks again and waits for deliveries."""
        t: Any = self._served
        self._served = None
        self._woke_self = False
        if self._inbox:
            self._inbox = False
            return
        if t is not None and t.tap is not None:
            tap = t.tap
            tap.closed = True
            t.tap = None
            tap.interrupt()

    def _serve_inbox(self, inbox: Any) -> int:
        """One turn of the session task on its mux address: handle what the mux routed to it. PUMP when a
        wake-up came (pump first), HANDLED when it handled a batch, else WAIT: wait until the mux delivers (it
        reschedules this task) or a wake-up comes.

        Before a pump for a wake-up the mux routes what its sockets hold (`route_waiting`), and that input is
        handled first, as an own socket's input queued before the wake-up datagram is: a check that came
        before the remote candidates' wake-up is answered, and its triggered check is the agent's first, not
        a second one that cancels the check the pump would send (RFC 8445 7.3.1.4)."""
        woken = self._wakeup.consume()
        if woken:
            inbox.route_waiting()
        try:
            items = inbox.receive_now(RECEIVE_BATCH)
        except trio.ClosedResourceError:
            self._stop_serving()
            return _PUMP if woken else _HANDLED
        if not items:
            return _PUMP if woken else _WAIT
        self._on_datagrams(inbox, items)  # a batch with STUN pumped (`_poke`); data alone changes no timer
        if woken or self._wakeup.is_set:  # (the batch's handling may have woken it: pump before waiting)
            return _PUMP
        # a short batch emptied the inbox (and should the mux have routed more meanwhile, the wait returns at once)
        return _WAIT if len(items) < RECEIVE_BATCH else _HANDLED

    async def _drive(self) -> None:
        """The session task after setup: pump, send what must wait (the outbox: TCP, TURN, plugin transports),
        then wait until woken, until the next deadline or, with a socket of its own, for its next batch.

        One cancel scope (`_sleep`) serves every wait until its deadline fires (a timer: a retransmission,
        nomination, consent) or a wake-up from another task ends a wait on the socket; in between, pumps
        only move its deadline, and input read here is handled in place (a pump only when it held STUN, and
        that pump answers every wake-up so far: `_poke` consumes the Wakeup first, so the step pumps once;
        the outbox and a Tap's stash are looked at by their state, not by the Wakeup). The outbox is sent
        outside that scope, so a deadline never interrupts a send.

        A timer's wake-up is that scope's Cancelled, raised through every handler between the wait and the
        scope, each one an exception normalisation and a Python-level `__subclasscheck__` (Trio's exception
        classes have a metaclass): so no try block lies between them. What a wait sets (`_polling`, the Tap's)
        is reset after it returns, after the scope, or by the handlers around the scope and the loop. Each
        scope starts with the deadline of the pump before it (no deadline move for it)."""
        wakeup = self._wakeup
        outbox = self._outbox
        delivered = False  # the socket's last batch woke the stream's reader (agent/_tap.py)
        waiting = False  # in the wait on its own socket (`_alert` clears `_polling` meanwhile, never this)
        try:
            while not self.closed:
                if self._crash is not None:  # (met in a signalling call's turn, `release`)
                    raise self._crash
                wakeup.flag = False  # this pump answers every wake-up so far
                deadline = self.pump(trio.current_time())
                if not outbox and not self.closed:
                    if deadline == -math.inf:  # still changing after pump's rounds: again, after the others
                        await trio.lowlevel.checkpoint()
                        continue
                    try:
                        with trio.CancelScope(deadline=deadline) as sleep:
                            self._sleep = sleep
                            due = False  # (pumped above)
                            while True:
                                if due:
                                    if self._crash is not None:
                                        raise self._crash
                                    wakeup.flag = False
                                    deadline = self.pump(trio.current_time())
                                    if outbox or self.closed:
                                        break
                                    if deadline == -math.inf:
                                        await trio.lowlevel.checkpoint()
                                        continue
                                    if deadline != sleep.deadline:  # setting it re-registers the scope even if equal
                                        sleep.deadline = deadline
                                due = True
                                sock: Any = self._served
                                if sock is None:
                                    await wakeup.wait()
                                    continue
                                if self._inbox:
                                    turn = self._serve_inbox(sock)
                                    if turn == _WAIT:  # (not in a helper: a coroutine frame less per idle agent)
                                        self._polling = True
                                        await sock.wait_receivable()
                                        self._polling = False
                                    due = turn == _PUMP
                                    continue
                                tap = sock.tap
                                if tap is not None and (tap.stash or tap.reader or (tap.want and delivered)):
                                    await tap.task_turn(delivered)  # the reader left it work, or has the socket
                                    delivered = False
                                    continue
                                if wakeup.flag:  # woken while busy: pump first
                                    continue
                                # One batch per step, read after epoll said the socket is readable: what is still
                                # queued wakes the task again through epoll, after the other tasks' turn (no extra
                                # checkpoint per batch, no recvfrom that finds nothing). The wait's errors are
                                # handled around the scope (no try block here: see above).
                                self._polling = True
                                if tap is not None:
                                    tap.polling = True
                                waiting = True
                                await trio.lowlevel.wait_readable(sock)
                                waiting = False
                                self._polling = False
                                if tap is not None:
                                    tap.polling = False
                                try:
                                    items = sock.receive_now(RECEIVE_BATCH)
                                except (trio.ClosedResourceError, OSError):
                                    self._stop_serving()
                                    continue
                                if self._woke_self:
                                    items = self._without_self_wake(items)
                                if items:
                                    # a batch with STUN pumps (`_poke`), and that pump answers every wake-up so far
                                    self._own_batch = True
                                    delivered = self._on_datagrams(sock, items)
                                    self._own_batch = False
                                    if delivered and tap is None:
                                        self._open_tap(sock, wakeup)
                                del items  # not kept alive while waiting for the next batch (an idle agent's memory)
                                if outbox:  # that pump's packets that must wait (its wake-up was consumed)
                                    break
                                due = False  # a batch with STUN pumped; data alone changes no timer
                    except (trio.ClosedResourceError, OSError):
                        if not waiting:  # not the wait on its own socket: not handled here
                            raise
                        waiting = False
                        self._end_poll()
                        self._stop_serving()
                    self._sleep = None
                    if waiting or self._polling:  # the scope's deadline (a wake-up's cancel, close()) ended the wait
                        waiting = False
                        self._end_poll()
                    if self._woke_self and sleep.cancelled_caught and sleep.deadline == self._fallback_at:
                        self._woke_self = self._self_wake = False  # the wake-up datagram did not come: cancel instead
                if outbox and not self.closed:
                    with trio.CancelScope() as sending:
                        self._sending = sending  # close() cancels a send that waits (TCP, TURN)
                        try:
                            while outbox:
                                transport, data, remote = outbox.pop(0)
                                await transport.send(data, remote)
                        finally:
                            self._sending = None
        finally:
            self._sleep = None
            if waiting or self._polling:
                self._end_poll()

    def _end_poll(self) -> None:
        """The session task no longer waits on its socket (or mux inbox): wake-ups set its Wakeup again."""
        self._polling = False
        sock: Any = self._served
        if sock is not None and not self._inbox and sock.tap is not None:
            sock.tap.polling = False
