/* Unit tests for core/cluster.c's URL parsing (the rest of cluster mode is
 * exercised end to end by spec/e2e/cluster_spec.lua against redis-server). */
#include <string.h>

#include "check.h"
#include "redis_url.h"

static int parses(const char *url, const char *host, int port, int db, const char *user,
                  const char *password)
{
  struct redis_url u;
  char err[256];
  if (redis_url_parse(url, &u, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", url, err);
    return 0;
  }
  return strcmp(u.host, host) == 0 && u.port == port && u.db == db && strcmp(u.user, user) == 0 &&
         strcmp(u.password, password) == 0;
}

static int refused(const char *url, const char *mentions)
{
  struct redis_url u;
  char err[256] = "";
  int rc = redis_url_parse(url, &u, err, sizeof(err));
  return rc == -1 && strstr(err, mentions) != NULL && strstr(err, "s3cret") == NULL;
}

int main(void)
{
  CHECK(parses("redis://127.0.0.1:6379", "127.0.0.1", 6379, 0, "", ""));
  CHECK(parses("redis://localhost", "localhost", 6379, 0, "", ""));
  CHECK(parses("redis://localhost/", "localhost", 6379, 0, "", ""));
  CHECK(parses("redis://10.0.0.5:7000/3", "10.0.0.5", 7000, 3, "", ""));
  CHECK(parses("redis://:s3cret@h:1/0", "h", 1, 0, "", "s3cret"));
  CHECK(parses("redis://s3cret@h", "h", 6379, 0, "", "s3cret"));
  CHECK(parses("redis://gw:s3cret@h:6380", "h", 6380, 0, "gw", "s3cret"));
  CHECK(parses("redis://gw:p@ss@h", "h", 6379, 0, "gw", "p@ss")); /* the last @ ends it */

  CHECK(refused("http://h:1", "expected redis://"));
  CHECK(refused("127.0.0.1:6379", "expected redis://"));
  CHECK(refused("redis://", "a host is needed"));
  CHECK(refused("redis://:s3cret@", "a host is needed"));
  CHECK(refused("redis://h:0", "port"));
  CHECK(refused("redis://h:65536", "port"));
  CHECK(refused("redis://h:12x", "port"));
  CHECK(refused("redis://:s3cret@h:", "port"));
  CHECK(refused("redis://h:1/x", "database"));
  CHECK(refused("redis://h:1/-1", "database"));
  CHECK(refused("redis://h?x=1", "unexpected"));
  return check_done();
}
