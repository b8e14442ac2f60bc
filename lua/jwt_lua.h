/* The JWT part of the `tinysse` Lua module: tinysse.jwt_verify, jwt_sign,
 * jwks and jwks_info, on the jose module (jose.h). tinysse_module.c calls
 * jwt_lua_register while it builds the module table. */
#ifndef JWT_LUA_H
#define JWT_LUA_H

struct lua_State;
struct jose_keyset;

/* The gateway's JWKS fetcher (struct tinysse_module_host's jwks_fetch):
 * a new reference to the newest set fetched from url, or NULL. */
typedef struct jose_keyset *(*jwt_lua_fetch_fn)(void *ud, const char *url, double refresh,
                                                int kid_missing);

/* Adds the JWT functions to the table at the top of L's stack (left there).
 * fetch may be NULL (the standalone module): URL key sets then raise. */
void jwt_lua_register(struct lua_State *L, void *ud, jwt_lua_fetch_fn fetch);

#endif
