/* JSON answers: every error the gateway gives is {"error":<kind>,"message":...}
 * with the right status. Bodies are built with json-c. */
#ifndef TINYSSE_JSONUTIL_H
#define TINYSSE_JSONUTIL_H

struct evhttp_request;
struct json_object;

/* Sends body (ownership taken; NULL sends {}) with code. */
void reply_json(struct evhttp_request *req, int code, struct json_object *body);
/* Sends {"error":error,"message":<printf>} with code. */
void reply_error(struct evhttp_request *req, int code, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same with a "field" member naming the offending input. */
void reply_field_error(struct evhttp_request *req, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *http_reason(int code);
/* {"error":error,"message":message}, for answers written outside evhttp;
 * the caller puts it (json_object_put). */
struct json_object *json_error(const char *error, const char *message);

#endif
