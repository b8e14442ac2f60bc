# Prints the browser client's sizes and fails past the budget
# (cmake -DWASM=... -DGLUE=... -P sizes.cmake).
file(SIZE ${WASM} wasm_size)
file(SIZE ${GLUE} glue_size)
message("tinysse.wasm ${wasm_size} bytes (budget 8192), tinysse.js ${glue_size} bytes (budget 6144)")
if(wasm_size GREATER 8192 OR glue_size GREATER 6144)
  message(FATAL_ERROR "over the size budget")
endif()
