/* logfmt logging to stderr, one write(2) per line so threads never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = LOG_INFO; /* SIGHUP sets it, every thread reads it */

/* A small ring of recent warnings and errors for the status page. */
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static char recent[LOG_RECENT_MAX][256];
static size_t recent_next, recent_count;

static void remember(const char *line, size_t n)
{
  pthread_mutex_lock(&recent_lock);
  snprintf(recent[recent_next], sizeof(recent[0]), "%.*s", (int)(n < 255 ? n : 255), line);
  recent_next = (recent_next + 1) % LOG_RECENT_MAX;
  if (recent_count < LOG_RECENT_MAX)
    recent_count++;
  pthread_mutex_unlock(&recent_lock);
}

size_t log_recent(char (*out)[256], size_t max)
{
  pthread_mutex_lock(&recent_lock);
  size_t n = recent_count < max ? recent_count : max;
  for (size_t i = 0; i < n; i++) {
    size_t idx = (recent_next + LOG_RECENT_MAX - n + i) % LOG_RECENT_MAX;
    memcpy(out[i], recent[idx], sizeof(recent[0]));
  }
  pthread_mutex_unlock(&recent_lock);
  return n;
}
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { min_level = (int)level; }

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

  if ((int)level < min_level)
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
  if (level >= LOG_WARN)
    remember(line, n);
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
