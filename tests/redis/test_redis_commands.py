"""`Commands`: the hot path's direct Redis commands behave as redis-py's client does."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from nbqueue.transports import redis_commands
from nbqueue.transports.redis_commands import Commands, Script


@pytest.fixture(autouse=True, params=["hiredis", "redis-py"])
def packer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test both ways: our own hiredis reader, and redis-py's (hiredis not installed)."""
    if request.param == "hiredis" and redis_commands.hiredis is None:
        pytest.skip("hiredis is not installed")
    if request.param == "redis-py":
        monkeypatch.setattr(redis_commands, "hiredis", None)
    return request.param


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def commands(client: redis.Redis) -> Iterator[Commands]:
    commands = Commands(client)
    yield commands
    commands.close()


def test_raw_replies_on_a_reused_connection(commands: Commands, client: redis.Redis):
    assert commands.execute("LPUSH", "q", "a", 1, 2.5) == 3
    assert commands.execute("LRANGE", "q", 0, -1) == [b"2.5", b"1", b"a"]
    assert commands.execute("GET", "missing") is None
    assert len(commands._free) == 1  # one caller at a time: one connection
    assert client.lrange("q", 0, -1) == [b"2.5", b"1", b"a"]  # the same bytes as redis-py


def test_a_reply_longer_than_one_read(commands: Commands, client: redis.Redis):
    value = bytes(range(256)) * 1200  # 300 KB: several reads of the socket
    client.set("big", value)
    assert commands.execute("GET", "big") == value
    assert commands.execute("STRLEN", "big") == len(value)  # nothing left over


def test_an_error_reply_raises_and_keeps_the_connection(commands: Commands):
    commands.execute("SET", "s", "text")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        commands.execute("LPUSH", "s", "x")
    assert commands.execute("GET", "s") == b"text"
    assert len(commands._free) == 1


def test_arguments_redis_cannot_take_are_a_data_error(commands: Commands):
    with pytest.raises(redis.DataError):
        commands.execute("SET", "k", None)
    assert commands.execute("EXISTS", "k") == 0


def test_a_script_the_server_does_not_know_is_loaded(commands: Commands, client: redis.Redis):
    script = Script("return {KEYS[1], ARGV[1]}")
    client.script_flush()
    assert commands.evalsha(script, ("key",), ("arg",)) == [b"key", b"arg"]
    assert client.script_exists(script.sha) == [True]


def test_a_dropped_connection_falls_back_to_the_client(commands: Commands, client: redis.Redis):
    commands.execute("SET", "k", "1")
    (link,) = commands._free
    link.conn.send_command("CLIENT", "ID")
    client.client_kill_filter(_id=link.conn.read_response())
    assert commands.execute("INCR", "k") == 2  # the client's own path (it reconnects)
    assert commands.execute("GET", "k") == b"2"


def test_concurrent_callers_each_get_a_connection(commands: Commands):
    barrier = threading.Barrier(4)

    def push(n: int) -> None:
        barrier.wait(10)
        for i in range(200):
            commands.execute("RPUSH", "list", f"{n}-{i}")

    threads = [threading.Thread(target=push, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert commands.execute("LLEN", "list") == 800
    assert 1 <= len(commands._free) <= 4


def test_after_close_commands_go_through_the_client(commands: Commands):
    commands.execute("SET", "k", "v")
    (link,) = commands._free
    commands.close()
    assert link.conn._sock is None  # idle connections closed
    assert commands.execute("GET", "k") == b"v"  # still works, by the client
    assert commands._free == []
