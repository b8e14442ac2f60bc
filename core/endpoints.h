/* The small endpoints: /healthz (liveness, cluster readiness), /metrics
 * (Prometheus text), /channels (subscriber counts, for publishers),
 * /auth/sse-token (the script's issue_token) and the browser client's
 * files from --assets. */
#ifndef TINYSSE_ENDPOINTS_H
#define TINYSSE_ENDPOINTS_H

struct request;

void endpoint_healthz(struct request *r);
void endpoint_metrics(struct request *r);
void endpoint_channels(struct request *r);
void endpoint_token(struct request *r);
int endpoint_is_asset(const char *path);
void endpoint_asset(struct request *r);

#endif
