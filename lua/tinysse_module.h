/* The `tinysse` Lua module offered to operator scripts: HMAC-SHA256,
 * base64url, JWT (HS/RS/PS/ES/EdDSA) and key sets, clock, logging, publish
 * and subscriber counts.
 * The gateway links it in and registers it with tinysse_module_open; built
 * alone (TINYSSE_STANDALONE_MODULE) it is a plain Lua C module for tests,
 * where publish and count raise an error and log writes to stderr. */
#ifndef TINYSSE_MODULE_H
#define TINYSSE_MODULE_H

#include <stddef.h>

struct lua_State;
struct jose_keyset;

/* What the module asks of the gateway. Every pointer may be NULL. */
struct tinysse_module_host {
  void *ud;
  /* level: 0 debug, 1 info, 2 warn, 3 error. msg is not NUL-terminated. */
  void (*log)(void *ud, int level, const char *msg, size_t len);
  /* Publishes data_json (valid JSON) to targets; writes the new id to id_out
   * and returns 0, or writes a reason to err and returns -1. With key (an
   * Idempotency-Key, else NULL) a repeat within the window publishes
   * nothing and gives the first publish's id. */
  int (*publish)(void *ud, const char *const *targets, size_t ntargets,
                 const char *data_json, size_t data_len, int handler_id, const char *event,
                 const char *key, char *id_out, size_t id_cap, char *err, size_t err_cap);
  /* Server-side subscriptions: adds and removes channels of user's streams
   * (or of the stream with connection id client), data being JSON for the
   * tinysse.subscribed event (NULL: none). The streams changed on this
   * node (>= 0), -2 when Redis answers later (cluster mode), or -1 with a
   * reason in err. */
  long (*subscribe)(void *ud, const char *user, const char *client, const char *const *add,
                    size_t nadd, const char *const *del, size_t ndel, const char *data,
                    size_t data_len, char *err, size_t err_cap);
  /* Subscribers of channel across the gateway (all workers). */
  long (*count)(void *ud, const char *channel);
  /* A 32-byte secret made once per process, the same for every Lua state. */
  const unsigned char *instance_secret;
  /* tinysse.jwks with a URL: returns a new reference to the newest key set
   * fetched from url, or NULL when none has been fetched yet; with
   * kid_missing set it also asks for an early refetch, rate-limited by the
   * gateway. Called from the Lua state's thread; the caller unrefs. tinysse.jwks
   * calls it once when a script makes the set (the result dropped), so the
   * gateway may start fetching then; jwt_verify calls it at each verify. */
  struct jose_keyset *(*jwks_fetch)(void *ud, const char *url, double refresh, int kid_missing);
};

/* Registers `tinysse` in package.preload of L with the given host
 * (copied; must outlive L's use of it only through ud). */
void tinysse_module_open(struct lua_State *L, const struct tinysse_module_host *host);
/* The plain module entry point (host-less in the standalone build). */
int luaopen_tinysse(struct lua_State *L);

#endif
