/* Inside the script host (host.c, hooks.c, callout.c): the state, and the
 * coroutine each hook call runs as. Not for the core. */
#ifndef TINYSSE_HOST_IMPL_H
#define TINYSSE_HOST_IMPL_H

#include <lua.h>

#include "host.h"

/* Turns the results a hook left on co's stack (exactly its count) into
 * res; returns res->status. */
typedef int (*hook_finish_fn)(struct script *s, lua_State *co, struct script_result *res);

/* One hook call: its coroutine, budget, and who waits for it. While it
 * runs synchronously it lives on the caller's stack; when it waits it moves
 * to the heap (the coroutine's extra space always points to it). */
struct script_call {
  struct script *s;
  lua_State *co;
  int co_ref;             /* anchors co in the registry */
  enum script_hook h;
  int nres;               /* the results the hook's finish expects */
  hook_finish_fn finish;
  double cpu_used;        /* seconds of running time so far */
  double wall_deadline;   /* monotonic */
  int may_wait;           /* call-outs may suspend it */
  int detached;           /* nobody waits (on_connect, on_disconnect) */
  int heap;               /* moved to the heap: waiting */
  void *io;               /* the call-out in flight, for cancelling */
  struct script_result *res;        /* the caller's while synchronous */
  struct script_result own;         /* the result, once on the heap */
  struct script_wait wait;
  struct script_call *prev, *next;  /* s->waiting */
};

struct script {
  lua_State *L;
  size_t used, cap;
  double deadline; /* monotonic seconds: the running call's CPU budget ends */
  int timed_out, in_on_error;
  int hooks[HOOK_COUNT]; /* registry refs, LUA_NOREF when absent */
  unsigned long long req_serial; /* the request whose table req_ref holds */
  int req_ref;
  int config_ref;
  struct script_call *waiting;
  struct script_io io;
  struct script_limits limits;
  struct script_stats *stats;
  char path[];
};

double host_mono_now(void);
void host_first_line(char *out, size_t cap, const char *msg);
void host_log_error(struct script *s, const char *what, const char *msg);
int host_bad_return(struct script *s, lua_State *L, const char *hook, const char *expected,
                    char *why, size_t whylen);
/* Runs hook h: the function and nargs arguments are on s->L. Fills res and
 * returns its status, or SCRIPT_PENDING (wait given and the hook waits). */
int host_run(struct script *s, enum script_hook h, int nargs, int nres, hook_finish_fn finish,
             struct script_result *res, const struct script_wait *wait, int detached);
/* The call a coroutine belongs to (NULL for the main thread). */
struct script_call *host_call_of(lua_State *co);
/* Resumes a waiting call with the nargs values pushed on its coroutine. */
void host_resume(struct script_call *c, int nargs);
/* tinysse.http, registered in the tinysse module by the host. */
int host_l_http(lua_State *L);

#endif
