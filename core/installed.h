/* Defaults for an installed gateway: --script and --assets fall back to the
 * copies `cmake --install` put in the data directory (<datadir>/tinysse,
 * e.g. /usr/share/tinysse) when their build-tree defaults do not exist. */
#ifndef TINYSSE_INSTALLED_H
#define TINYSSE_INSTALLED_H

#include "config.h"

/* The data directory compiled in (TINYSSE_DATA_DIR). */
const char *installed_data_dir(void);
/* Call after config_parse_args, before the script is loaded: for --script
 * and --assets left at their defaults (not on the command line) whose path
 * does not exist from here, uses the installed copy when there is one. A
 * script's config table may still set assets afterwards. */
void installed_defaults(struct config *c);

#endif
