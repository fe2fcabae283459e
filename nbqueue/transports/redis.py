"""``redis://`` for nbqueue's own connections: kombu's Redis transport, a few small changes.

Keys, envelopes, ack emulation, priorities, visibility timeout and restore are kombu's,
untouched. What changes is only what an embedded worker needs:

* **one client per channel.** kombu builds a new ``redis.Redis`` for every publish, ack
  and delivery record (``conn_or_acquire``); on redis-py 8 that costs ~0.4 ms of CPU,
  three times per task. The channel keeps one (thread-safe: a pooled connection per
  command). BRPOP and pub/sub keep their own connections, as in kombu.
* **direct commands on the hot path.** Publishing (``LPUSH``, and ``PUBLISH`` for fanout:
  events), the ack scripts and the fetch go through `redis_commands.Commands`: the same
  commands and bytes, without redis-py's per-call machinery (~20 µs of CPU each).
* **ack emulation in one command.** Recording a delivery (``ZADD unacked_index`` +
  ``HSET unacked``) and forgetting it on ack (``ZREM`` + ``HDEL``) are one ``EVALSHA``
  each instead of a MULTI/EXEC pipeline: the same keys, values and atomicity, about a
  third of the CPU (measured: the pipelines were half of a worker's time per task).
  With ``global_keyprefix`` set, kombu's pipelines are kept (its prefixing knows them).
* **what is waiting, in one step.** Messages waiting (up to the prefetch room, in BRPOP's
  key order) are popped *and* recorded as unacked by one script — kombu's records,
  atomically with the pop — before any BRPOP, and again after a BRPOP delivers. BRPOP
  (pop, then record: a process killed in between loses that message) is left for
  consumers waiting on empty queues. The message a BRPOP delivers is recorded by that
  same script, before it is handed on (one round trip, not a record then a fetch). After
  a fetch that found the queues empty the consumer waits in BRPOP at once. Not for queues
  consumed without acks.
* **acks ride on the next fetch.** An ack made while the consumer waits — in BRPOP, or at
  its prefetch limit (it is woken once half its window is free) — is forgotten by the
  script that records the next delivery (or within a poll, ≤ 0.25 s, or at close) instead
  of by a round trip of its own.
* **less kombu per message.** What kombu recomputes on every poll (the consumed queues,
  the key lists of BRPOP and of the fetch) is kept until consuming changes; its messages
  are built in one step; envelopes are decoded without its JSON object hook; the BRPOP
  client is a plain cached attribute (kombu's cached properties lock on every read).
* **a loop that can be woken.** `Transport.wakeup` (another thread) makes a waiting
  ``drain_events`` return at once, through a socket pair registered with kombu's poller,
  so the worker's loop runs scheduled calls (cancel, close) without waiting for a poll.
* **a short restore lock.** kombu's visibility sweep holds a lock key (``unacked_mutex``)
  for at most ``unacked_mutex_expire`` seconds, 300 by default: a worker killed inside a
  sweep stops every sweep for five minutes, so its own messages come back that late. A
  sweep takes milliseconds; nbqueue's default is 30 s (a transport option, as in kombu).
* **a prompt close.** A channel closed while its BRPOP is outstanding would wait for the
  BRPOP's timeout (1 s) to read its reply; it sends ``CLIENT UNBLOCK`` for that
  connection first (when the server allows it), so the reply — a message or nothing — comes
  at once and is restored as kombu restores it.

nbqueue maps ``redis://`` URLs onto this transport (``nbredis://``, see
`nbqueue.messaging.resolve_broker_url`); Celery apps in the same process keep kombu's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from binascii import a2b_base64
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from queue import Empty
from time import monotonic, sleep, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.eventio import READ
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads
from kombu.utils.objects import cached_property as locked_cached_property

from ..protocol import new_id
from .redis_commands import Commands, Script

__all__ = ["Channel", "QoS", "Transport"]

#: KEYS: unacked_index, unacked  ARGV: tag, delivery time, [envelope, exchange, routing_key]
_RECORD = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
"""
#: KEYS: unacked_index, unacked  ARGV: tags
_FORGET = """
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
"""
#: Forget the ARGV[3] acknowledged tags that follow it, record the message BRPOP just
#: delivered (tag and record, when given after them), then pop up to ARGV[1] more, in the
#: order the keys are given (BRPOP's order), recording each as unacked the way kombu
#: does, in one atomic step. KEYS: unacked_index, unacked, then the queue/priority lists.
#: ARGV: count, delivery time, n, n tags[, tag, record]. Returns {key, envelope, ...}. An
#: envelope it cannot read goes back where it was, for the BRPOP path to deal with.
_FETCH = """
local acked = tonumber(ARGV[3])
for i = 4, 3 + acked do
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
end
local tag = ARGV[4 + acked]
if tag then
    redis.call('ZADD', KEYS[1], ARGV[2], tag)
    redis.call('HSET', KEYS[2], tag, ARGV[5 + acked])
end
local out = {}
local wanted = tonumber(ARGV[1])
for i = 3, #KEYS do
    while #out < wanted * 2 do
        local item = redis.call('RPOP', KEYS[i])
        if not item then break end
        local ok, message = pcall(cjson.decode, item)
        local props = ok and type(message) == 'table' and message['properties']
        local info = type(props) == 'table' and props['delivery_info']
        local tag = type(props) == 'table' and props['delivery_tag']
        if type(info) ~= 'table' or type(tag) ~= 'string' then
            redis.call('RPUSH', KEYS[i], item)
            return out
        end
        redis.call('ZADD', KEYS[1], ARGV[2], tag)
        redis.call('HSET', KEYS[2], tag, '[' .. item .. ', ' .. cjson.encode(info['exchange'])
            .. ', ' .. cjson.encode(info['routing_key']) .. ']')
        out[#out + 1] = KEYS[i]
        out[#out + 1] = item
    end
end
return out
"""
#: at most this many messages are fetched past a BRPOP in one round trip
FETCH_LIMIT = 32
#: at most this many acknowledged tags are forgotten by one script (Lua's unpack limit)
ACKED_LIMIT = 1000
#: acks a channel could not send before it closed, by server, database and unacked key
_UNSENT_ACKS: defaultdict[tuple[Any, ...], deque[str]] = defaultdict(deque)
#: pauses between tries to record a delivery while Redis is unreachable (about 30 s)
RECORD_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 10.0)

logger = logging.getLogger(__name__)


def _dumps(value: Any) -> str:
    """kombu's JSON (the same text for JSON's own types), by the stdlib's encoder first."""
    try:
        return json.dumps(value)
    except TypeError:  # an envelope with kombu's rich types
        return kombu_dumps(value)


def _loads(text: str) -> Any:
    """kombu's JSON decoding; the stdlib's alone when no kombu type marker is in the text."""
    return loads(text) if '"__type__"' in text else json.loads(text)


def _record(message: Any) -> str:
    """kombu's unacked record of a delivery: ``[envelope, exchange, routing_key]``."""
    info = message.delivery_info
    return _dumps([message._raw, info["exchange"], info["routing_key"]])


#: kombu's body codecs (base64 is decoded inline when a channel uses these)
_KOMBU_CODECS = virtual.Channel.codecs


class Message(virtual.Message):
    """kombu's virtual message, built in one step (kombu's two ``__init__``s do the same
    through keyword plumbing, per delivered message)."""

    def __init__(self, payload: dict[str, Any], channel: Any = None, **kwargs: Any) -> None:
        headers = payload.get("headers") or {}
        if kwargs or headers.get("compression"):
            super().__init__(payload, channel, **kwargs)
            return
        self._raw = payload
        properties = payload["properties"]
        body = payload.get("body")
        if body:
            encoding = properties.get("body_encoding")
            if encoding == "base64" and channel.codecs is _KOMBU_CODECS:  # kombu's Base64
                body = a2b_base64(body.encode() if isinstance(body, str) else body)
            else:
                body = channel.decode_body(body, encoding)
        self.errors = []
        self.channel = channel
        self.delivery_tag = properties["delivery_tag"]
        self.content_type = payload.get("content-type")
        self.content_encoding = payload.get("content-encoding")
        self.delivery_info = properties.get("delivery_info") or {}
        self.headers = headers
        self.properties = properties
        self._decoded_cache = None
        self._state = "RECEIVED"
        self.accept = None
        if isinstance(body, str):
            try:
                body = body.encode("utf-8")
            except Exception:
                self.errors.append(sys.exc_info())
        self.body = body


class QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation; recording and forgetting a delivery in one command."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if not self.channel.scripted_acks:
            return super().append(message, delivery_tag)
        channel = self.channel
        recorded = channel.prerecorded
        if delivery_tag in recorded:  # fetched and recorded in one step (`Channel._fetch`)
            recorded.discard(delivery_tag)
        elif channel.fetch_with_record:  # BRPOP's message: recorded by the fetch script
            channel.fetch_with_record = False
            record = channel.record_of(message)
            try:
                channel.fetched = channel.fetch(delivery_tag, record)
            except channel.connection_errors:  # then recorded alone, retried while away
                self._record_surely(delivery_tag, record)
        else:
            self._record_surely(delivery_tag, channel.record_of(message))
        virtual.QoS.append(self, message, delivery_tag)

    def _record_surely(self, delivery_tag: str, record: str) -> None:
        """Record a BRPOP delivery, retrying while Redis is away (~30 s): BRPOP already took
        the message off its queue, so until it is recorded this process holds the only copy
        (kombu's own record would give up at once and the message be lost)."""
        for delay in (*RECORD_RETRY_DELAYS, None):
            try:
                self.channel.run_script("record", delivery_tag, time(), record)
                return
            except self.channel.connection_errors as exc:
                if delay is None:
                    logger.error("delivery %s never recorded, so lost: %s", delivery_tag, exc)
                    raise
                logger.warning("recording delivery %s failed (%s); retrying", delivery_tag, exc)
                sleep(delay)

    def ack(self, delivery_tag: str) -> None:
        channel = self.channel
        if channel.scripted_acks:
            transport = channel.connection
            waiting = channel._in_poll or (transport is not None and transport.starved)
            if waiting and not channel._closing:
                channel.acked.append(delivery_tag)  # forgotten by the next fetch script
            else:
                self._forget_now(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
        else:
            super().ack(delivery_tag)
        self._made_room()

    def _forget_now(self, delivery_tag: str) -> None:
        """Forget an ack's record now; with the broker away, keep the ack for this channel's
        next fetch — or the next channel's, once this one closed — rather than losing it
        (a lost ack makes the task run again after the visibility timeout)."""
        channel = self.channel
        try:
            channel.run_script("forget", delivery_tag)
        except channel.connection_errors as exc:
            kept = _UNSENT_ACKS[channel._acks_key] if channel._closing else channel.acked
            kept.append(delivery_tag)
            logger.warning("ack of %s kept until the broker is back (%s)", delivery_tag, exc)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue or not self.channel.scripted_acks:
            super().reject(delivery_tag, requeue=requeue)
        else:
            self.channel.run_script("forget", delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
        self._made_room()

    def _made_room(self) -> None:
        """Wake a consumer that stopped polling because its prefetch limit was reached, once
        half its window is free: woken at every ack it would fetch one message per round
        trip; woken at half, it fetches them in batches while the other half still waits in
        the pool's queue (a window of one wakes at every ack)."""
        transport = self.channel.connection
        if transport is not None and transport.starved:
            room = self.can_consume_max_estimate()
            if room is None or room >= max(1, self.prefetch_count // 2):
                transport.wakeup()


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: one shared client, lighter acks, a close that does not wait."""

    QoS = QoS
    Message = Message

    #: seconds a dead sweeper's restore lock outlives it (kombu's 300: see the module doc)
    unacked_mutex_expire = 30

    #: (socket, CLIENT ID) of the connection the BRPOPs go out on
    _brpop_id: tuple[Any, int] | None = None
    #: set while BRPOP's message is delivered: `QoS.append` records it *and* fetches
    fetch_with_record = False
    #: what that fetch popped ([key, envelope, ...]), delivered after BRPOP's message
    fetched: list[Any] | None = None
    #: the last fetch found the queues empty (it brought less than it had room for)
    emptied = False
    #: (envelope, its JSON as BRPOP returned it) while BRPOP's message is delivered
    _brpop_envelope: tuple[Any, str] | None = None

    @property
    def scripted_acks(self) -> bool:
        """Whether acks go through our scripts (not with a global key prefix)."""
        return self.ack_emulation and not self.global_keyprefix

    _ack_scripts = {
        name: Script(source)
        for name, source in (("record", _RECORD), ("forget", _FORGET), ("fetch", _FETCH))
    }

    @cached_property
    def acked(self) -> deque[str]:
        """Tags acknowledged while the consumer waited (in BRPOP, or at its prefetch limit):
        their records go in the script that records the next delivery — within a round trip
        while messages keep coming — or within a poll (≤ 0.25 s) when none comes, so a busy
        worker spends no round trip of its own on an ack. An early ack then reaches Redis
        shortly after the task started, as with Celery's prefork pool, whose parent acks
        once a child has accepted the task."""
        return deque()

    @property
    def _acks_key(self) -> tuple[Any, ...]:
        client = self.connection.client
        return (client.hostname, client.port, client.virtual_host, self.unacked_key)

    def hand_over_acked(self) -> None:
        """At close: forget what `acked` holds; if Redis cannot be reached, leave the tags
        to the next channel to this database (a reconnecting worker's), which sends them
        with its first fetch — else those messages would come back, and run again, after
        the visibility timeout."""
        try:
            self.forget_acked()
        except self.connection_errors as exc:
            acked, kept = self.acked, _UNSENT_ACKS[self._acks_key]
            while acked:
                kept.append(acked.popleft())
            logger.warning("acks kept until the broker is back (%s)", exc)

    def take_acked(self) -> list[str]:
        """Up to `ACKED_LIMIT` tags from `acked`, removed from it (other threads append),
        after taking in what a closed channel to this database could not send."""
        acked, tags = self.acked, []
        if _UNSENT_ACKS and self.connection is not None:
            acked.extend(_UNSENT_ACKS.pop(self._acks_key, ()))
        while acked and len(tags) < ACKED_LIMIT:
            tags.append(acked.popleft())
        return tags

    def forget_acked(self) -> None:
        """Forget what `acked` holds now (tags are put back if a command fails)."""
        while tags := self.take_acked():
            try:
                self.run_script("forget", *tags)
            except BaseException:
                self.acked.extendleft(reversed(tags))
                raise

    @cached_property
    def prerecorded(self) -> set[str]:
        """Tags of messages `_fetch` already recorded as unacked."""
        return set()

    def run_script(self, name: str, *args: Any, keys: tuple[str, ...] = ()) -> Any:
        """Run an ack script on ``unacked_index``, ``unacked`` (and `keys`)."""
        keys = (self.unacked_index_key, self.unacked_key, *keys)
        return self.commands.evalsha(self._ack_scripts[name], keys, args)

    @cached_property
    def no_ack_queues(self) -> set[str]:
        """Queues consumed without acks (pidbox replies...): never recorded as unacked."""
        return set()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self.no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    @cached_property
    def client(self) -> Any:
        """kombu's BRPOP client, read only in the loop thread: a plain cached attribute
        (kombu's cached properties take a lock on every read, several times per message)."""
        return self._create_client(asynchronous=True)

    @cached_property
    def subclient(self) -> Any:
        """kombu's pub/sub connection (fanout queues), a plain cached attribute as `client`."""
        return self._create_client(asynchronous=True).pubsub()

    @cached_property
    def active_queues(self) -> list[str]:
        """kombu's list of consumed (non-fanout) queues, kept until consuming changes
        (`_update_queue_cycle`): kombu rebuilds it several times per message."""
        return list(
            dict.fromkeys(q for q in self._active_queues if q not in self.active_fanout_queues)
        )

    @cached_property
    def _fetchable(self) -> bool:
        """No active queue is consumed without acks (those are never fetched)."""
        return not any(q in self.no_ack_queues for q in self.active_queues)

    @cached_property
    def _priority_keys(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        """The lists a fetch pops, by queue order (priority-major, as BRPOP's keys)."""
        return {}

    @cached_property
    def _queue_of_key(self) -> dict[bytes, str]:
        """The queue each fetched list key belongs to (kombu's ``rsplit`` of the key)."""
        return {}

    def _update_queue_cycle(self) -> None:
        """kombu's hook after every consume and cancel: what is consumed changed."""
        for name in ("active_queues", "_fetchable", "_priority_keys", "_queue_of_key"):
            self.__dict__.pop(name, None)
        super()._update_queue_cycle()

    def _keys_for(self, queues: list[str]) -> tuple[str, ...]:
        order = tuple(queues)
        cache = self._priority_keys
        keys = cache.get(order)
        if keys is None:
            if len(cache) >= 64:  # many queues: orders are permutations, keep it bounded
                cache.clear()
            steps = self.priority_steps
            keys = cache[order] = tuple(self._q_for_pri(q, pri) for pri in steps for q in order)
        return keys

    def maybe_refresh_binding_expiry(self) -> Any:
        """kombu's keep-alive of expiring queues' bindings; nothing to do (kombu looks at
        every consumed queue, every poll) while no queue declared here expires."""
        if not self._expires:
            return None
        return super().maybe_refresh_binding_expiry()

    @property
    def fetching(self) -> bool:
        """Whether waiting messages may be popped and recorded in one script."""
        return self.scripted_acks and not self._closing and self._fetchable

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's BRPOP delivery, then what else is waiting, up to the prefetch room: the
        delivered message's unacked record and that fetch are one script (`QoS.append`)."""
        fetching = self.fetch_with_record = self.fetching
        try:
            delivered = self._brpop_deliver(**options)
        finally:
            self.fetch_with_record = False
        popped, self.fetched = self.fetched, None
        if popped is not None:
            self._deliver_fetched(popped)
        elif delivered and fetching:  # BRPOP's message was not recorded by us: fetch alone
            self._fetch()
        return delivered

    def _brpop_deliver(self, **options: Any) -> bool:
        """kombu's `_brpop_read` (read BRPOP's reply, rotate, deliver), the envelope decoded
        by `_loads` (kombu's ``loads`` runs an object hook over every JSON object)."""
        if self.global_keyprefix:  # kombu's prefixed client strips the key's prefix
            return super()._brpop_read(**options)
        client = self.client
        try:
            try:
                reply = client.parse_response(client.connection, "BRPOP", **options)
            except self.connection_errors:
                client.connection.disconnect()  # the next poll reconnects, as in kombu
                raise
            if not reply:
                raise Empty()
            dest, item = reply
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            text = bytes_to_str(item)
            envelope = _loads(text)
            self._brpop_envelope = (envelope, text)
            self.connection._deliver(envelope, dest)
            return True
        finally:
            self._brpop_envelope = None
            self._in_poll = None
            self._flush_brpop_reauth()

    def record_of(self, message: Any) -> str:
        """kombu's unacked record of `message`; for BRPOP's message, with its envelope as
        BRPOP returned it (as the fetch script records), not encoded again."""
        brpop = self._brpop_envelope
        if brpop is None or brpop[0] is not message._raw:
            return _record(message)
        info = message.delivery_info
        return f"[{brpop[1]}, {_dumps(info['exchange'])}, {_dumps(info['routing_key'])}]"

    def _fetch(self) -> int:
        """Deliver what is waiting, up to the prefetch room; returns how many."""
        popped = self.fetch()
        self._deliver_fetched(popped)
        return len(popped) // 2

    def fetch(self, *record: str) -> list[Any]:
        """Pop and record (one round trip) as many waiting messages as prefetch allows,
        recording `record` (tag, record) first when given; returns [key, envelope, ...]."""
        room = self.qos.can_consume_max_estimate()
        room = FETCH_LIMIT if room is None else min(room, FETCH_LIMIT)
        if record:
            room -= 1  # the message being recorded is not counted yet
        queues = self._queue_cycle.consume(len(self.active_queues))
        if room <= 0 or not queues:
            if record:
                self.run_script("record", record[0], time(), record[1])
            self.forget_acked()
            return []
        acked = self.take_acked()
        try:
            popped = self.run_script(
                "fetch", room, time(), len(acked), *acked, *record, keys=self._keys_for(queues)
            )
        except BaseException:
            self.acked.extendleft(reversed(acked))
            raise
        self.emptied = len(popped) < 2 * room
        return popped

    def _deliver_fetched(self, popped: list[Any]) -> None:
        if not popped:
            return
        prerecorded = self.prerecorded
        queues = self._queue_of_key
        rotate = self._queue_cycle.rotate
        deliver = self.connection._deliver
        for key, item in zip(popped[::2], popped[1::2], strict=True):
            message = _loads(bytes_to_str(item))
            prerecorded.add(message["properties"]["delivery_tag"])
            dest = queues.get(key)
            if dest is None:
                dest = queues[key] = bytes_to_str(key).rsplit(self.sep, 1)[0]
            rotate(dest)
            deliver(message, dest)

    def _next_delivery_tag(self) -> str:
        return new_id()  # a uuid4 string like kombu's, without a syscall per message

    @locked_cached_property  # pool threads (acks) use it too: made once, under a lock
    def shared_client(self) -> Any:
        """The client for everything but BRPOP/pub-sub (those keep their own connection)."""
        return self._create_client()

    @locked_cached_property
    def commands(self) -> Commands:
        """The hot path's commands (publish, ack scripts), on `shared_client`'s server."""
        return Commands(self.shared_client)

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's publish (``LPUSH`` of the JSON envelope) as one direct command."""
        if (
            self.global_keyprefix
            or kwargs.get("_publish_batch") is not None
            or (self._expires and queue in self._expires)
        ):
            return super()._put(queue, message, **kwargs)
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        self.commands.execute("LPUSH", key, _dumps(message))

    def _put_fanout(self, exchange: str, message: Any, routing_key: str, **kwargs: Any) -> None:
        """kombu's fanout publish (``PUBLISH`` on each topic) as direct commands (events)."""
        if self.global_keyprefix or kwargs.get("_publish_batch") is not None:
            return super()._put_fanout(exchange, message, routing_key, **kwargs)
        payload = _dumps(message)
        for topic in self._get_publish_topics(exchange, routing_key):
            self.commands.execute("PUBLISH", topic, payload)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client if client else self.shared_client

    def _disconnect_pools(self) -> None:
        super()._disconnect_pools()
        self.__dict__.pop("shared_client", None)  # later calls (restore at close) get a new pool
        commands = self.__dict__.pop("commands", None)
        if commands is not None:
            commands.close()
        self.__dict__.pop("prerecorded", None)

    def _brpop_start(self, timeout: float | None = None) -> None:
        """kombu's BRPOP send, its keys from `_keys_for` (kombu rebuilds them each time)."""
        self._remember_brpop_id()
        if self.global_keyprefix:
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        if timeout is None:
            timeout = self.brpop_timeout
        connection = self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        connection.send_command("BRPOP", *self._keys_for(queues), timeout or 0)
        return None

    def _remember_brpop_id(self) -> None:
        """Learn the BRPOP connection's id once per socket (to unblock it at close)."""
        connection = self.client.connection
        sock = getattr(connection, "_sock", None)
        if sock is None or (self._brpop_id is not None and self._brpop_id[0] is sock):
            return
        try:
            connection.send_command("CLIENT", "ID")
            self._brpop_id = (sock, int(connection.read_response()))
        except self.ResponseError:  # CLIENT not allowed here: close waits for the BRPOP
            self._brpop_id = (sock, -1)

    def close(self) -> None:
        closing = self._closing
        if not closing and self.scripted_acks:
            self.hand_over_acked()
        if self._in_poll and self._brpop_id is not None and self._brpop_id[1] >= 0:
            try:
                self.shared_client.client_unblock(self._brpop_id[1])
            except (*self.connection_errors, self.ResponseError):
                pass  # then the BRPOP's reply comes when it times out, as in kombu
        super().close()
        if not closing and self.scripted_acks:
            self.hand_over_acked()  # acks made while it closed (no longer deferred now)
        self._disconnect_pools()  # the pool kombu's restore-at-close opened after its own


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` and `wakeup`; ``nbredis://``."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._woken = False
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        #: a consumer waits with its prefetch limit reached: an ack must wake it
        self.starved = False

    def wakeup(self) -> None:
        """Make a ``drain_events`` waiting in another thread return now (``TimeoutError``)."""
        self._woken = True
        pair = self._wake_pair
        if pair is not None:
            with contextlib.suppress(OSError):  # full (already woken) or closed
                pair[1].send(b"\0")

    def _wake_socket(self) -> socket.socket:
        if self._wake_pair is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._wake_pair = (reader, writer)
            self.cycle.poller.register(reader, READ)
        return self._wake_pair[0]

    def _clear_wakeup(self, reader: socket.socket) -> None:
        self._woken = False
        try:
            while reader.recv(4096):
                pass
        except OSError:  # drained
            pass

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's drain, returning early (``TimeoutError``) when `wakeup` is called."""
        reader = self._wake_socket()
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._woken:
                self._clear_wakeup(reader)
                raise TimeoutError()
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            self.starved = True  # set before looking: an ack from now on wakes us
            self.starved = any(
                ch.active_queues and not ch.qos.can_consume() for ch in list(self.channels)
            )
            try:
                if self._fetch_waiting():
                    if not any(ch.active_queues and ch.qos.can_consume() for ch in self.channels):
                        # prefetch full, so no BRPOP goes out: serve pub/sub (control) now
                        with contextlib.suppress(Empty):
                            self.cycle.get(self._deliver, timeout=0)
                    return
                self.cycle.get(self._deliver, timeout=remaining)
                return
            except Empty:
                continue

    def _fetch_waiting(self) -> bool:
        """Deliver waiting messages through `Channel._fetch` (popped and recorded as unacked
        in one script) before any BRPOP: BRPOP pops first and records after, so a process
        killed between the two loses that message. With this, only a consumer waiting on
        empty queues takes the BRPOP path: after a fetch that found them empty, it waits in
        BRPOP at once (a second fetch would mostly find nothing: a round trip per message
        for a worker that keeps up). True if anything was delivered."""
        delivered = 0
        for channel in list(self.channels):
            idle = channel.active_queues and not channel._in_poll  # no BRPOP outstanding
            if idle and not channel.emptied and channel.fetching and channel.qos.can_consume():
                delivered += channel._fetch()
            elif channel.acked or _UNSENT_ACKS:
                channel.forget_acked()
        return delivered > 0

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        pair, self._wake_pair = self._wake_pair, None
        for sock in pair or ():
            sock.close()
