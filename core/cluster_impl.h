/* What cluster.c (the follower, publishing) and cluster_subs.c
 * (subscription entries) share of cluster mode; nothing else includes
 * this. */
#ifndef TINYSSE_CLUSTER_IMPL_H
#define TINYSSE_CLUSTER_IMPL_H

#include <stdatomic.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "redis_link.h"

#define FOLLOW_BLOCK_MS 1000 /* XREAD BLOCK: well inside the link's 5 s watchdog */
#define FOLLOW_COUNT 1000    /* entries per XREAD */

struct cluster {
  struct gateway *gw;
  struct redis_url url;
  const char *key;
  /* "<--buffer>:<--buffer-age in ms>:<--buffer-bytes>": Redis keeps as
   * many messages as each node, for as long, in as many bytes (the
   * scripts' ARGV[1], see CLUSTER_TRIM_LUA) */
  char bounds[80];
  size_t cap;
  /* the follower: worker 0's thread only */
  struct redis_link *follow;
  struct msgpos last; /* the newest id read */
  int synced;
  int subs_stale; /* a gap: reload the kept subscriptions */
  /* read from any thread */
  struct redis_link_stats links;
  atomic_int ready;
  atomic_ulong entries_read, bad_entries, gaps, publish_refused, publish_failed;
};

/* The start of each script that appends to the stream. ARGV[1] is
 * cl->bounds, "<--buffer>:<--buffer-age ms>:<--buffer-bytes>". xadd(f)
 * appends one entry (f: its field, value list) and answers its id, or
 * redis.pcall's error table; trim(), called after the appends, bounds
 * Redis's history as each node bounds its own: by count, age and bytes.
 * Without a byte bound, XADD's MAXLEN keeps the count and XTRIM MINID the
 * age. With one, the hash <stream>:bytes holds the bytes of the entries'
 * values (b) and the stream's first id (f) it was counted for; trim() drops
 * the oldest entries while any bound is passed, subtracting what they held,
 * and counts the stream anew when its first id is not f (the first use,
 * or the stream was trimmed or deleted by something else). */
#define CLUSTER_TRIM_LUA                                                                   \
  "local maxlen, age, bytes = string.match(ARGV[1], '^(%d+):(%d+):(%d+)$')\n"               \
  "maxlen, age, bytes = tonumber(maxlen), tonumber(age), tonumber(bytes)\n"                 \
  "local added = 0\n"                                                                      \
  "local function size(f)\n"                                                               \
  "  local n = 0\n"                                                                        \
  "  for i = 2, #f, 2 do n = n + #f[i] end\n"                                              \
  "  return n\n"                                                                           \
  "end\n"                                                                                  \
  "local function xadd(f)\n"                                                               \
  "  local r\n"                                                                            \
  "  if bytes > 0 then r = redis.pcall('XADD', KEYS[1], '*', unpack(f))\n"                 \
  "  else r = redis.pcall('XADD', KEYS[1], 'MAXLEN', maxlen, '*', unpack(f)) end\n"        \
  "  if type(r) ~= 'table' then added = added + size(f) end\n"                             \
  "  return r\n"                                                                           \
  "end\n"                                                                                  \
  "local function head()\n"                                                                \
  "  return redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"                       \
  "end\n"                                                                                  \
  "local function trim()\n"                                                                \
  "  local floor\n"                                                                        \
  "  if age > 0 then\n"                                                                    \
  "    local t = redis.call('TIME')\n"                                                     \
  "    floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age\n"          \
  "  end\n"                                                                                \
  "  if bytes == 0 then\n"                                                                 \
  "    if floor then redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', floor)) end\n" \
  "    return\n"                                                                           \
  "  end\n"                                                                                \
  "  local bk, h = KEYS[1] .. ':bytes', head()\n"                                          \
  "  local st = redis.call('HMGET', bk, 'b', 'f')\n"                                       \
  "  local total = 0\n"                                                                    \
  "  if h and st[1] and st[2] == h[1] then\n"                                              \
  "    total = tonumber(st[1]) + added\n"                                                  \
  "  elseif h then\n"                                                                      \
  "    local from = '-'\n"                                                                 \
  "    repeat\n"                                                                           \
  "      local b = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 1000)\n"              \
  "      for _, e in ipairs(b) do total = total + size(e[2]) end\n"                        \
  "      if b[1] then from = '(' .. b[#b][1] end\n"                                        \
  "    until #b < 1000\n"                                                                  \
  "  end\n"                                                                                \
  "  local len, cut, b, n = redis.call('XLEN', KEYS[1]), nil, {h}, 1\n"                    \
  "  while b[1] do\n"                                                                      \
  "    local over\n"                                                                       \
  "    for _, e in ipairs(b) do\n"                                                         \
  "      over = total > bytes or len > maxlen or\n"                                        \
  "             (floor and tonumber(string.match(e[1], '^%d+')) < floor)\n"                \
  "      if not over then break end\n"                                                     \
  "      total, len, cut = total - size(e[2]), len - 1, e[1]\n"                            \
  "    end\n"                                                                              \
  "    if not over then break end\n"                                                       \
  "    n = math.min(n * 2, 64)\n"                                                          \
  "    b = redis.call('XRANGE', KEYS[1], '(' .. cut, '+', 'COUNT', n)\n"                   \
  "  end\n"                                                                                \
  "  if cut then\n"                                                                        \
  "    local ms, seq = string.match(cut, '^(%d+)-(%d+)$')\n"                               \
  "    redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))\n" \
  "    h = head()\n"                                                                       \
  "  end\n"                                                                                \
  "  if h then redis.call('HSET', bk, 'b', total, 'f', h[1]) else redis.call('DEL', bk) end\n" \
  "end\n"

/* A field of a stream entry's [field, value, ...] list: its string
 * value, or NULL. */
const redisReply *cluster_field(const redisReply *fields, const char *name);

/* Subscription entries (cluster_subs.c). Is this entry one ("k" = "s")? */
int cluster_subs_is_entry(const redisReply *fields);
/* Applies it (the store, then every worker): NULL, or why it is refused. */
const char *cluster_subs_entry(struct cluster *cl, const redisReply *fields, char *why, size_t whylen);
/* At the follower's first start, and after a gap: loads the subscriptions
 * Redis keeps into this node's store (replacing it), then calls then(cl). */
void cluster_subs_load(struct cluster *cl, void (*then)(struct cluster *cl));

#endif
