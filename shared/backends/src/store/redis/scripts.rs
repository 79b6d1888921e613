//! The Lua scripts of the Redis store: each runs atomically in Redis.

/// Writes a job record. KEYS: record, done channel, backlog hash, rate
/// bucket, dead index, dead message, webhook outbox, webhook outcome, the
/// model's waiting set, the model's recent-completions list. ARGV: record
/// JSON, TTL ms, "1" if the record is final, job id, model, mode, dead
/// message, now (ms), "1" if the job has a webhook, "1" if the job is queued
/// (not started), its creation time (ms), the completion line (see
/// `store::recent`), the list's capacity, the list's TTL (s).
///
/// A final write pushes the completion line onto the model's list and
/// trims it to its capacity, so the statistics window moves exactly once
/// per job, in the same step as the backlog.
///
/// The waiting set (job ids by creation time, while they are queued) gives
/// the age of the oldest waiting job, an autoscaling signal.
///
/// The backlog hash is only as durable as Redis. When a record is missing
/// (Redis lost its data, or the record outlived its TTL while queued), a
/// worker's `running` write counts the job back in, and a final write over
/// no record takes nothing out (the loss took it out already), so the
/// counter agrees with the jobs in flight again as they are delivered.
///
/// Modes: `save` refuses to replace a final record; `revive` writes only
/// over a dead-lettered one and counts the job back into the backlog (and
/// forgets the earlier webhook outcome, so the new ending is announced);
/// `dead` is `save` that also parks the message and indexes the job. A
/// final write of a job with a webhook puts it into the outbox in the same
/// step, so the notification cannot be lost between the two.
pub(super) const SAVE_SCRIPT: &str = r#"
local final = {succeeded=true, failed=true, canceled=true, expired=true, dead_lettered=true}
local cur = redis.call('GET', KEYS[1])
local status = nil
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok then status = rec['status'] end
end
if ARGV[6] == 'revive' then
  if status ~= 'dead_lettered' then return 0 end
elseif status and final[status] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[10] == '1' then
  redis.call('ZADD', KEYS[9], ARGV[11], ARGV[4])
else
  redis.call('ZREM', KEYS[9], ARGV[4])
end
if ARGV[3] == '1' then
  if cur and redis.call('HINCRBY', KEYS[3], ARGV[5], -1) < 0 then
    redis.call('HSET', KEYS[3], ARGV[5], 0)
  end
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], 120)
  redis.call('PUBLISH', KEYS[2], ARGV[4])
  redis.call('LPUSH', KEYS[10], ARGV[12])
  redis.call('LTRIM', KEYS[10], 0, tonumber(ARGV[13]) - 1)
  redis.call('EXPIRE', KEYS[10], ARGV[14])
  if ARGV[9] == '1' then
    redis.call('ZADD', KEYS[7], ARGV[8], 'job:' .. ARGV[4])
  end
elseif ARGV[6] == 'revive' then
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  redis.call('DEL', KEYS[8])
elseif not cur and ARGV[10] ~= '1' then
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
end
if ARGV[6] == 'dead' then
  redis.call('SET', KEYS[6], ARGV[7], 'PX', ARGV[2])
  redis.call('ZADD', KEYS[5], ARGV[8], ARGV[4])
end
return 1
"#;

/// Counts a job into KEYS[1] (the backlog hash) field ARGV[1] unless it
/// already holds ARGV[2] (0 = no limit). Returns {admitted, backlog}.
pub(super) const ADMIT_SCRIPT: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local max = tonumber(ARGV[2])
if max > 0 and n >= max then return {0, n} end
return {1, redis.call('HINCRBY', KEYS[1], ARGV[1], 1)}
"#;

/// Admits a new job and writes its queued record: [`ADMIT_SCRIPT`] and the
/// queued write of [`SAVE_SCRIPT`] in one step. KEYS: record, backlog hash,
/// the model's waiting set. ARGV: record JSON, TTL ms, model, max (0 = no
/// limit), job id, creation time (ms). Returns {1, backlog} when admitted
/// and written, {0, backlog} when full, {-1, backlog} when a record of that
/// id exists (nothing changed either way).
pub(super) const ADMIT_RECORD_SCRIPT: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
local max = tonumber(ARGV[4])
if max > 0 and n >= max then return {0, n} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, n} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
return {1, redis.call('HINCRBY', KEYS[2], ARGV[3], 1)}
"#;

/// Deletes KEYS[1] if it still starts with ARGV[1] (a job id).
pub(super) const RELEASE_IDEM_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// Rebinds KEYS[1] to ARGV[2] (`"{job} {fingerprint}"`, for ARGV[3] ms) if
/// it is still bound to job ARGV[1] and was bound at least ARGV[4] ms ago
/// (its TTL, ARGV[3] when bound, has run down by that much). Returns 1 if
/// rebound.
pub(super) const TAKE_OVER_IDEM_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, string.len(ARGV[1])) ~= ARGV[1] then return 0 end
local left = redis.call('PTTL', KEYS[1])
if tonumber(ARGV[3]) - left < tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Takes one job out of the backlog, never below zero.
pub(super) const RELEASE_SCRIPT: &str = r#"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) < 0 then
  redis.call('HSET', KEYS[1], ARGV[1], 0)
end
return 1
"#;
