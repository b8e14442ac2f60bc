# HTTP/2 specs (issue 14), included by spec/CMakeLists.txt when present.
# h2abuse (spec/fault/h2abuse.c) is the HTTP/2 abuse client: rapid reset,
# CONTINUATION flood, HPACK bomb, SETTINGS/PING floods, zero-window stalls,
# over h2c with prior knowledge; it links libnghttp2 for its HPACK deflater.
if(NOT TARGET PkgConfig::NGHTTP2)
  pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
endif()

add_executable(h2abuse ${CMAKE_CURRENT_SOURCE_DIR}/fault/h2abuse.c)
target_compile_options(h2abuse PRIVATE ${TINYSSE_WARNINGS})
target_link_libraries(h2abuse PRIVATE PkgConfig::NGHTTP2)

# spec/e2e/h2_abuse_spec.lua drives it (TINYSSE_H2ABUSE in the specs'
# environment, set in spec/CMakeLists.txt).
