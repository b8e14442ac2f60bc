/* --help, the man page tinysse(1) (--man, roff) and --version. The option
 * listings walk the option table (config_option_at), so --help, the man page
 * and what the gateway accepts cannot drift apart; the rest of the man page
 * (signals, environment, examples) is written here. */
#include "usage.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#ifdef TINYSSE_HAVE_URING
#include <liburing.h>
#endif

#include "config.h"
#include "host.h"
#include "installed.h"

/* --help */

/* Prints s from column *col, wrapping at 79 columns back to column indent:
 * between words, or only before s when it must stay in one piece. */
static void put_wrapped(FILE *out, const char *s, int one_piece, int indent, int *col)
{
  for (const char *p = s; *p;) {
    size_t n = one_piece ? strlen(p) : strcspn(p, " ");
    if (n == 0) {
      p++;
      continue;
    }
    if (*col > indent && *col + 1 + (int)n > 79) {
      fprintf(out, "\n%*s", indent, "");
      *col = indent;
    } else if (*col > indent) {
      putc(' ', out);
      (*col)++;
    }
    fprintf(out, "%.*s", (int)n, p);
    *col += (int)n;
    p += n;
  }
}

void usage_help(FILE *out, const char *argv0)
{
  struct config_option_info o;
  fprintf(out, "usage: %s [options]\n\nA Server-Sent Events gateway with Lua hooks.\n\n", argv0);
  for (size_t i = 0; config_option_at(i, &o) == 0; i++) {
    char left[64], text[300];
    int col = 33;
    if (!o.help)
      continue; /* hidden */
    snprintf(left, sizeof(left), "--%s%s%s", o.name, o.value ? " " : "", o.value ? o.value : "");
    fprintf(out, "  %-30s ", left);
    put_wrapped(out, o.help, 0, 33, &col);
    if (o.def) {
      snprintf(text, sizeof(text), "(default: %s)", o.def);
      put_wrapped(out, text, strlen(text) <= 30, 33, &col); /* short ones in one piece */
    }
    if (o.reload != CONFIG_CLI_ONLY)
      put_wrapped(out, o.reload == CONFIG_RELOAD_RESTART ? "[needs restart]" : "[reloads live]", 1,
                  33, &col);
    putc('\n', out);
  }
  fprintf(out,
          "\nEvery option but --script, --check, --help and --version can also come from\n"
          "the script's config table (written with _ or -); the command line wins.\n"
          "SIGHUP reloads the script and its config table: [reloads live] options change\n"
          "at once, [needs restart] ones are logged as needs_restart and keep their value.\n"
          "The publish key can also come from the environment: TINYSSE_PUBLISH_KEY.\n");
}

/* --version */

void usage_version(FILE *out, const char *version)
{
  const nghttp2_info *h2 = nghttp2_version(0);
  fprintf(out, "tinysse %s\n", version);
  fprintf(out, "libevent %s\n", event_get_version());
  fprintf(out, "%s\n", OpenSSL_version(OPENSSL_VERSION));
  fprintf(out, "nghttp2 %s\n", h2 ? h2->version_str : "(version unknown)");
  fprintf(out, "%s\n", script_lua_version());
  fprintf(out, "json-c %s\n", json_c_version());
  fprintf(out, "hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
#if defined(TINYSSE_HAVE_URING) && defined(IO_URING_VERSION_MAJOR)
  fprintf(out, "liburing %d.%d\n", IO_URING_VERSION_MAJOR, IO_URING_VERSION_MINOR);
#elif defined(TINYSSE_HAVE_URING)
  fprintf(out, "liburing (version unknown)\n"); /* no version macros before liburing 2.4 */
#else
  fprintf(out, "liburing: not built in (streams are written with writev)\n");
#endif
}

/* --man */

/* Writes s as roff text: backslashes, hyphens (as \-) and characters beyond
 * ASCII escaped, a line break taken as a space, and a dot, quote or space
 * that would open an input line (bol) kept from acting as one. */
static void roff_text(FILE *out, const char *s, int bol)
{
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, bol = 0) {
    unsigned c = *p;
    if (bol && (c == '.' || c == '\'' || c == ' '))
      fputs("\\&", out);
    if (c == '\\') {
      fputs("\\e", out);
    } else if (c == '-') {
      fputs("\\-", out);
    } else if (c < 0x20 || c == 0x7f) {
      putc(' ', out);
    } else if (c < 0x80) {
      putc((int)c, out);
    } else {
      /* UTF-8: as \[uXXXX]; a broken sequence as '?' */
      int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0, k;
      unsigned long cp = c & (0x3fu >> n);
      for (k = 1; n && k <= n && (p[k] & 0xc0) == 0x80; k++)
        cp = cp << 6 | (p[k] & 0x3fu);
      if (n == 0 || k <= n || cp < 0x80 || cp > 0x10ffff) {
        putc('?', out);
        continue;
      }
      fprintf(out, "\\[u%04lX]", cp);
      p += n;
    }
  }
}

static const char *default_of(const char *name)
{
  struct config_option_info o;
  for (size_t i = 0; config_option_at(i, &o) == 0; i++)
    if (strcmp(o.name, name) == 0)
      return o.def;
  return NULL;
}

static void man_options(FILE *out)
{
  struct config_option_info o;
  for (size_t i = 0; config_option_at(i, &o) == 0; i++) {
    if (!o.help)
      continue; /* hidden */
    fputs(".TP\n\\fB\\-\\-", out);
    roff_text(out, o.name, 0);
    fputs("\\fR", out);
    if (o.value) {
      fputs(" \\fI", out);
      roff_text(out, o.value, 0);
      fputs("\\fR", out);
    }
    putc('\n', out);
    roff_text(out, o.help, 1);
    fputs(".\n", out);
    if (o.def) {
      fputs("Default: \\fB", out);
      roff_text(out, o.def, 0);
      fputs("\\fR.\n", out);
    }
    if (o.reload == CONFIG_RELOAD_LIVE)
      fputs("On SIGHUP: reloads live.\n", out);
    else if (o.reload == CONFIG_RELOAD_RESTART)
      fputs("On SIGHUP: needs a restart.\n", out);
  }
}

/* "\-\-script, \-\-check, \-\-help and \-\-version": what only the command
 * line sets. */
static void man_cli_only(FILE *out)
{
  struct config_option_info o;
  size_t n = 0, k = 0;
  for (size_t i = 0; config_option_at(i, &o) == 0; i++)
    n += o.help && o.reload == CONFIG_CLI_ONLY;
  for (size_t i = 0; config_option_at(i, &o) == 0; i++) {
    if (!o.help || o.reload != CONFIG_CLI_ONLY)
      continue;
    fputs(k == 0 ? "\\fB\\-\\-" : k + 1 < n ? ", \\fB\\-\\-" : " and \\fB\\-\\-", out);
    roff_text(out, o.name, 0);
    fputs("\\fR", out);
    k++;
  }
}

void usage_man(FILE *out, const char *version)
{
  char date[32] = "";
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  time_t t = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
  struct tm tm;
  if (gmtime_r(&t, &tm))
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
  const char *script = default_of("script"), *assets = default_of("assets");

  fputs(".\\\" tinysse(1), written by \"tinysse --man\" from the option table in\n"
        ".\\\" core/config.c (core/usage.c): do not edit.\n", out);
  fprintf(out, ".TH TINYSSE 1 \"%s\" \"tinysse ", date);
  roff_text(out, version, 0);
  /* .nh: no word is hyphenated, so option names and URLs stay whole */
  fputs("\" \"User Commands\"\n"
        ".nh\n"
        ".SH NAME\n"
        "tinysse \\- Server\\-Sent Events gateway with Lua hooks\n"
        ".SH SYNOPSIS\n"
        ".B tinysse\n"
        ".RI [ options ]\n"
        ".br\n"
        ".B tinysse \\-\\-check\n"
        ".RI [ options ]\n"
        ".br\n"
        ".B tinysse\n"
        ".RB ( \\-\\-help \" | \" \\-\\-version )\n"
        ".SH DESCRIPTION\n"
        ".B tinysse\n"
        "is a Server\\-Sent Events gateway.\n"
        "A C core on libevent holds the client connections and does all per\\-message\n"
        "work (routing by channel, SSE framing, fan\\-out, replay), while a short Lua 5.4\n"
        "script decides who may connect, which channels a connection joins, and what\n"
        "happens on connect and disconnect.\n"
        "Apps publish with one HTTP request, POST /publish, authorised by the publish key;\n"
        "browsers receive with EventSource from the stream endpoint (\\fB\\-\\-endpoint\\fR).\n"
        ".PP\n"
        "Every message gets an id; a client that reconnects with Last\\-Event\\-ID gets\n"
        "exactly what it missed from a bounded replay buffer (\\fB\\-\\-buffer\\fR), or an\n"
        "explicit tinysse.reset event when it fell out of it.\n"
        "With \\fB\\-\\-redis\\fR, several gateways share their messages through a Redis\n"
        "stream, so a client may resume on any of them.\n"
        "The gateway also serves /healthz, Prometheus metrics at /metrics, a live\n"
        "status page at /status and the browser client files (\\fB\\-\\-assets\\fR).\n"
        ".PP\n"
        "Every option but ",
        out);
  man_cli_only(out);
  fputs("\n"
        "can also come from the script's config table (the name written with _ or \\-);\n"
        "the command line wins.\n"
        "An option's value follows it as the next argument or after =, as in\n"
        "\\fB\\-\\-buffer=5000\\fR; a repeatable option may be given up to 16 times.\n"
        "Bad options or an unloadable script: a one\\-line error on stderr, exit status 2.\n"
        "Logs are logfmt lines on stderr.\n"
        ".SH OPTIONS\n",
        out);
  man_options(out);
  fputs(".SH SIGNALS\n"
        ".TP\n"
        ".B SIGHUP\n"
        "Reloads the script (the old one stays if the new one fails to load; open\n"
        "streams are kept) and its config table: options marked \\(lqreloads live\\(rq\n"
        "take effect at once, those marked \\(lqneeds a restart\\(rq keep their running\n"
        "value and are logged as needs_restart.\n"
        "A value that fails its check is logged as event=reload_failed and the old one\n"
        "kept.\n"
        "The TLS certificate and key files are re\\-read.\n"
        ".TP\n"
        ".BR SIGTERM \", \" SIGINT\n"
        "Stop accepting, send every stream a tinysse.shutdown event and close it, so\n"
        "EventSource reconnects (to another gateway behind a load balancer) and resumes\n"
        "with its Last\\-Event\\-ID; requests already read are answered, and the process\n"
        "exits once the streams are gone, within about 2 seconds.\n"
        ".SH EXIT STATUS\n"
        "0 after a stop by signal, or when \\fB\\-\\-check\\fR found no problem;\n"
        "1 when \\fB\\-\\-check\\fR found one;\n"
        "2 for bad options, a script that does not load, or a gateway that cannot start.\n"
        ".SH ENVIRONMENT\n"
        ".TP\n"
        ".B TINYSSE_PUBLISH_KEY\n"
        "The publish key (16 characters or more) when neither \\fB\\-\\-publish\\-key\\fR\n"
        "nor the script's config table sets one.\n"
        "Without any, and without an authorize_publish hook in the script, the gateway\n"
        "makes a random key at start and prints it once on stderr.\n"
        ".TP\n"
        ".B SOURCE_DATE_EPOCH\n"
        "The date this page carries when written by \\fB\\-\\-man\\fR (for reproducible\n"
        "builds).\n"
        ".SH FILES\n",
        out);
  const char *data = installed_data_dir();
  if (script) {
    fputs(".TP\n\\fI", out);
    roff_text(out, script, 0);
    fputs("\\fR\nThe Lua script run when \\fB\\-\\-script\\fR is not given (a relative path\n"
          "is taken from the working directory); where there is none, its installed copy\n"
          "in the data directory.\n",
          out);
  }
  int assets_in_data = assets && strcmp(assets, data) == 0; /* a packaged build */
  if (assets && !assets_in_data) {
    fputs(".TP\n\\fI", out);
    roff_text(out, assets, 0);
    fputs("\\fR\nThe browser client files served at /tinysse.js, /tinysse.wasm and /demo\n"
          "when \\fB\\-\\-assets\\fR is not given; where that directory does not exist,\n"
          "the data directory.\n",
          out);
  }
  fputs(".TP\n\\fI", out);
  roff_text(out, data, 0);
  fputs("\\fR\nThe data directory of an installed gateway: the shipped scripts, the\n"
        "browser client files, and monitoring/ (Prometheus alert rules, a Grafana\n"
        "dashboard)",
        out);
  fputs(assets_in_data ? "; the \\fB\\-\\-assets\\fR default.\n" : ".\n", out);
  fputs(".SH EXAMPLES\n"
        "Run with the shipped default script on 127.0.0.1:8080:\n"
        ".PP\n"
        ".RS\n"
        ".nf\n"
        "TINYSSE_PUBLISH_KEY=dev\\-publish\\-key\\-change\\-me \\e\n"
        "  tinysse \\-\\-script scripts/default.lua\n"
        ".fi\n"
        ".RE\n"
        ".PP\n"
        "Subscribe with a stream token, then publish to a role:\n"
        ".PP\n"
        ".RS\n"
        ".nf\n"
        "curl \\-N \"http://127.0.0.1:8080/events?token=$TOKEN\"\n"
        "curl \\-H \"Authorization: Bearer $KEY\" \\e\n"
        "  http://127.0.0.1:8080/publish \\e\n"
        "  \\-d '{\"targets\":[\"role:admin\"],\"data\":{\"hello\":\"world\"}}'\n"
        ".fi\n"
        ".RE\n"
        ".PP\n"
        "Check a script and its options without starting:\n"
        ".PP\n"
        ".RS\n"
        ".nf\n"
        "tinysse \\-\\-check \\-\\-script site.lua\n"
        ".fi\n"
        ".RE\n"
        ".PP\n"
        "Serve browsers over TLS and HTTP/2, with a plain loopback port for publishers:\n"
        ".PP\n"
        ".RS\n"
        ".nf\n"
        "tinysse \\-\\-listen 0.0.0.0:443 \\e\n"
        "  \\-\\-tls\\-cert cert.pem \\-\\-tls\\-key key.pem \\e\n"
        "  \\-\\-plain\\-listen 127.0.0.1:8080 \\-\\-cors\\-origin https://app.example\n"
        ".fi\n"
        ".RE\n"
        ".PP\n"
        "Reload the script and its options:\n"
        ".PP\n"
        ".RS\n"
        ".nf\n"
        "kill \\-HUP \"$(pidof tinysse)\"\n"
        ".fi\n"
        ".RE\n"
        ".SH SEE ALSO\n"
        ".BR curl (1),\n"
        ".BR lua5.4 (1),\n"
        ".BR redis\\-server (1)\n"
        ".PP\n"
        "README.md in the tinysse source tree: the HTTP API, the Lua hooks and the\n"
        "tinysse module, metrics, limits and guarantees.\n",
        out);
}
