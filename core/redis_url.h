/* The --redis URL: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. */
#ifndef TINYSSE_REDIS_URL_H
#define TINYSSE_REDIS_URL_H

#include <stddef.h>

struct redis_url {
  char host[256];
  int port, db;
  char user[128];     /* "" for the default user */
  char password[256]; /* "" when none; never logged */
};
/* 0, or -1 with a one-line reason in err (which never repeats the
 * password). */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

#endif
