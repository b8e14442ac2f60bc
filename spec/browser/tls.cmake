# Browser tests of native TLS and HTTP/2 (issue 14), included by
# spec/CMakeLists.txt after it looks for node and chromium (the
# TINYSSE_*_FOR_SPEC variables). browser_h2_tabs: 20 tabs of one origin in
# headless Chromium, each with its own EventSource; over HTTP/2 all get every
# message on one TCP connection, with --no-http2 pages past the 6th get no
# stream (the table it prints shows both).
if(TINYSSE_BROWSER_TESTS AND TINYSSE_NODE_FOR_SPEC AND TINYSSE_CHROMIUM_FOR_SPEC)
  add_test(NAME browser_h2_tabs
    COMMAND ${TINYSSE_NODE_FOR_SPEC} --test ${CMAKE_CURRENT_LIST_DIR}/h2_tabs.test.mjs
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(browser_h2_tabs PROPERTIES TIMEOUT 180 ENVIRONMENT
    "TINYSSE_BIN=$<TARGET_FILE:tinysse>;TINYSSE_CHROMIUM=${TINYSSE_CHROMIUM_FOR_SPEC}")
endif()
