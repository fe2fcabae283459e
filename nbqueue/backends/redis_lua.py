"""The Lua scripts of the Redis result backend: one atomic round trip per operation.

The chord scripts keep Celery 5.7's Redis chord protocol (keys ``<gid>.j .t .s .d .c``,
members ``"<task id>:<index>"``, a claim token under ``.c`` and the ``done`` marker), so a
chord whose header tasks run on Celery and nbqueue workers completes exactly once.
Written here from the protocol, not copied.
"""

from __future__ import annotations

__all__ = ["CHORD_CLAIM_EXTEND", "CHORD_CLEANUP", "CHORD_PART", "STORE_RESULT"]

#: Store a task's meta unless a SUCCESS is already stored; publish it on the key's channel.
#: KEYS: meta key. ARGV: meta JSON, the write command (``SETEX`` seconds, ``PSETEX`` ms for a
#: fractional expiry, ``SET`` for none) and its ttl. Returns the stored SUCCESS meta
#: when it refused to overwrite it, else nil. One round trip instead of GET + MULTI/EXEC,
#: and no window between the check and the write.
STORE_RESULT = """
local current = redis.call('GET', KEYS[1])
if current then
    local ok, meta = pcall(cjson.decode, current)
    if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
        return current
    end
end
if ARGV[2] == 'SET' then
    redis.call('SET', KEYS[1], ARGV[1])
else
    redis.call(ARGV[2], KEYS[1], ARGV[3], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return false
"""

#: Record one chord header result once, and claim the body's dispatch when all are in.
#: KEYS: .j .t .s .d <group key> .c
#: ARGV: task id, encoded part, ordered (1/0), index ('+inf' if none), chord ttl,
#: group ttl, claim ttl, claim token.
#: Returns {count, size diff, size, claimed}; count is -1 once the chord is done.
CHORD_PART = """
local joined, diff_key, size_key, seen_key, group_key, claim_key =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local task_id, part, ordered, index = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4]
local ttl, group_ttl, claim_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

if redis.call('GET', claim_key) == 'done' then
    return {-1, 0, 0, 0}
end
local member = task_id .. ':' .. index
if redis.call('SISMEMBER', seen_key, member) == 0 then
    if ordered then
        redis.call('ZADD', joined, index, part)
    else
        redis.call('RPUSH', joined, part)
    end
    redis.call('SADD', seen_key, member)
end
local count
if ordered then
    count = redis.call('ZCOUNT', joined, '-inf', '+inf')
else
    count = redis.call('LLEN', joined)
end
if ttl > 0 then
    for _, key in ipairs({joined, diff_key, size_key, seen_key}) do
        redis.call('EXPIRE', key, ttl)
    end
    if group_ttl > 0 then
        redis.call('EXPIRE', group_key, group_ttl)
    end
end
local diff = redis.call('GET', diff_key)
local size = redis.call('GET', size_key)
local claimed = 0
if size and count == tonumber(size) + tonumber(diff or 0) then
    if redis.call('SET', claim_key, ARGV[8], 'NX', 'EX', claim_ttl) then
        claimed = 1
    end
end
return {count, diff, size, claimed}
"""

#: Keep (or take back, while the chord's data is still there) the dispatch claim.
#: KEYS: .c .s  ARGV: token, ttl. Returns 1 when this token holds the claim.
CHORD_CLAIM_EXTEND = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if not holder and redis.call('EXISTS', KEYS[2]) == 1 then
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
        return 1
    end
end
return 0
"""

#: After the body was sent: drop the chord's data and leave the ``done`` marker, if this
#: token still holds the claim. KEYS: .c .j .t .s .d  ARGV: token, done ttl.
CHORD_CLEANUP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
    redis.call('SET', KEYS[1], 'done', 'EX', ttl)
end
return 1
"""
