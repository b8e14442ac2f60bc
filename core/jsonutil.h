/* Every error the gateway gives is {"error":<kind>,"message":...} with the
 * right status (request.h answers with it); this is the body, and the
 * reason phrase of a status. */
#ifndef TINYSSE_JSONUTIL_H
#define TINYSSE_JSONUTIL_H

struct json_object;

const char *http_reason(int code);

/* json-c constructors under the error policy (alloc.h): they never return
 * NULL (the process aborts with a message instead), so no answer silently
 * loses a member. */
struct json_object *json_obj(void);
struct json_object *json_arr(void);
struct json_object *json_str(const char *s);
struct json_object *json_i64(long long v);
struct json_object *json_dbl(double v);
/* The compact text of o (valid until o changes or is put). */
const char *json_text(struct json_object *o);
/* {"error":error,"message":message}; the caller puts it (json_object_put). */
struct json_object *json_error(const char *error, const char *message);

#endif
