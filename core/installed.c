/* Where an installed gateway finds its default script and browser client:
 * the build-tree defaults (scripts/default.lua from the source root, the
 * build's wasm/ directory) when they exist, else the data directory that
 * `cmake --install` and the Debian package fill (TINYSSE_DATA_DIR, set by
 * CMakeLists.txt to <datadir>/tinysse). */
#include "installed.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TINYSSE_DATA_DIR
#define TINYSSE_DATA_DIR "/usr/local/share/tinysse"
#endif

const char *installed_data_dir(void)
{
  return TINYSSE_DATA_DIR;
}

/* Set on the command line: the bit of its row in the option table. */
static int given(const struct config *c, const char *name)
{
  struct config_option_info o;
  for (size_t i = 0; config_option_at(i, &o) == 0; i++)
    if (strcmp(o.name, name) == 0)
      return (c->set_by_cli >> i) & 1;
  return 1; /* unknown option: leave it alone */
}

static int is_dir(const char *path)
{
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void installed_defaults(struct config *c)
{
  /* lives as long as the config (the whole process) */
  static char script[4096];
  const char *s = c->script;
  if (s && !given(c, "script") && access(s, F_OK) != 0) {
    const char *base = strrchr(s, '/');
    int n = snprintf(script, sizeof(script), "%s/%s", TINYSSE_DATA_DIR, base ? base + 1 : s);
    if (n > 0 && (size_t)n < sizeof(script) && access(script, R_OK) == 0)
      c->script = script;
  }
  if (!given(c, "assets") && !is_dir(c->assets) && is_dir(TINYSSE_DATA_DIR))
    c->assets = TINYSSE_DATA_DIR;
}
