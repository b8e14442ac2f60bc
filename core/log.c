/* logfmt logging to stderr, one write(2) per line so threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { min_level = level; }

int log_parse_level(const char *name)
{
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

void log_event(enum log_level level, const char *event, const char *fields, ...)
{
  char line[2048];
  struct timespec ts;
  struct tm tm;
  size_t n;

  if (level < min_level)
    return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s event=%s",
                        ts.tv_nsec / 1000000, names[level], event);
  if (fields && n < sizeof(line) - 2) {
    va_list ap;
    line[n++] = ' ';
    va_start(ap, fields);
    int k = vsnprintf(line + n, sizeof(line) - n, fields, ap);
    va_end(ap);
    n = k < 0 ? n : (n + (size_t)k >= sizeof(line) - 1 ? sizeof(line) - 2 : n + (size_t)k);
  }
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}

const char *log_quote(char *buf, unsigned long cap, const char *value)
{
  size_t o = 0;
  if (cap < 3) {
    if (cap)
      buf[0] = '\0';
    return buf;
  }
  buf[o++] = '"';
  for (const char *p = value ? value : ""; *p && o + 4 < cap; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (c < 0x20 || c == 0x7f) {
      buf[o++] = '?';
    } else {
      buf[o++] = (char)c;
    }
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}
