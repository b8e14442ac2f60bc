/* Every error the gateway gives is {"error":<kind>,"message":...} with the
 * right status (request.h answers with it); this is the body, and the
 * reason phrase of a status. */
#ifndef TINYSSE_JSONUTIL_H
#define TINYSSE_JSONUTIL_H

struct json_object;

const char *http_reason(int code);
/* {"error":error,"message":message}; the caller puts it (json_object_put). */
struct json_object *json_error(const char *error, const char *message);

#endif
