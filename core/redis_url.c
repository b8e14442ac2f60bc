/* redis:// URLs for --redis (cluster mode). */
#include "redis_url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
  static const char scheme[] = "redis://";
  memset(out, 0, sizeof(*out));
  out->port = 6379;
  if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
    snprintf(err, errlen, "--redis: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
    return -1;
  }
  const char *p = url + sizeof(scheme) - 1;
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    if ((size_t)(at - pw) >= sizeof(out->password) ||
        (colon && (size_t)(colon - p) >= sizeof(out->user))) {
      snprintf(err, errlen, "--redis: the user name or password is too long");
      return -1;
    }
    if (colon)
      memcpy(out->user, p, (size_t)(colon - p));
    memcpy(out->password, pw, (size_t)(at - pw));
    p = at + 1;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof(out->host)) {
    snprintf(err, errlen, "--redis: a host is needed (redis://HOST:PORT)");
    return -1;
  }
  memcpy(out->host, p, hl);
  for (size_t i = 0; i < hl; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
          p[i] == '.' || p[i] == '-' || p[i] == '_')) {
      snprintf(err, errlen, "--redis: unexpected '%c' in the host name", p[i]);
      return -1;
    }
  p += hl;
  if (*p == ':') {
    char *end;
    errno = 0;
    long port = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
      snprintf(err, errlen, "--redis: the port must be a number from 1 to 65535");
      return -1;
    }
    out->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    errno = 0;
    long db = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || *end || db < 0 || db > 100000) {
      snprintf(err, errlen, "--redis: the database must be a number (redis://HOST:PORT/DB)");
      return -1;
    }
    out->db = (int)db;
  } else if (*p && strcmp(p, "/") != 0) {
    snprintf(err, errlen, "--redis: unexpected '%s' after the host", p);
    return -1;
  }
  return 0;
}
