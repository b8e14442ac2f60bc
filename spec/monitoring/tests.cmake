# The monitoring tests (included from spec/CMakeLists.txt): promtool checks
# and unit-tests the alert rules in scripts/monitoring/, and a busted spec
# checks every metric name the rules and the Grafana dashboard use against
# a running gateway's /metrics.
find_program(TINYSSE_PROMTOOL promtool)
if(TINYSSE_PROMTOOL)
  add_test(NAME monitoring_promtool_check
    COMMAND ${TINYSSE_PROMTOOL} check rules scripts/monitoring/tinysse-rules.yml
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME monitoring_promtool_test
    COMMAND ${TINYSSE_PROMTOOL} test rules scripts/monitoring/tinysse-rules-test.yml
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set(tinysse_monitoring_env "${TINYSSE_SPEC_ENV}")
  list(APPEND tinysse_monitoring_env "TINYSSE_PROMTOOL=${TINYSSE_PROMTOOL}")
else()
  message(WARNING "spec/: promtool not found: the alert-rule tests (monitoring_promtool_check, "
                  "monitoring_promtool_test) are skipped, and monitoring_metric_names does not "
                  "check the dashboard's PromQL; install Debian's prometheus package (.ci/setup "
                  "does) to run them")
  set(tinysse_monitoring_env "${TINYSSE_SPEC_ENV}")
endif()

add_test(NAME monitoring_metric_names
  COMMAND ${BUSTED} --lua=${LUA54} -o utfTerminal ${CMAKE_CURRENT_SOURCE_DIR}/monitoring/metric_names_spec.lua
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(monitoring_metric_names PROPERTIES ENVIRONMENT "${tinysse_monitoring_env}" TIMEOUT 120)
