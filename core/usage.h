/* What tinysse says about itself: --help, the man page tinysse(1) (--man,
 * in roff) and --version. Both option listings are rendered from the option
 * table (config_option_at), so they cannot drift from what the gateway
 * accepts. */
#ifndef TINYSSE_USAGE_H
#define TINYSSE_USAGE_H

#include <stdio.h>

/* --help: every option with its value's name, default and reload policy. */
void usage_help(FILE *out, const char *argv0);
/* --man: tinysse(1) in roff (man macros); dated SOURCE_DATE_EPOCH when set,
 * else today, so a package build is reproducible. */
void usage_man(FILE *out, const char *version);
/* --version: "tinysse <version>", then one line per linked library. */
void usage_version(FILE *out, const char *version);

#endif
