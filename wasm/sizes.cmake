# Prints the browser client's sizes and fails past the budget
# (cmake -DWASM=... -DGLUE=... -P sizes.cmake). The glue's budget was 6 KiB
# until tab sharing (connect({share})) added about 3.6 KB of unminified JS
# (election, the channel, failover, freeze); see README.md, "Sizes".
file(SIZE ${WASM} wasm_size)
file(SIZE ${GLUE} glue_size)
message("tinysse.wasm ${wasm_size} bytes (budget 8192), tinysse.js ${glue_size} bytes (budget 9216)")
if(wasm_size GREATER 8192 OR glue_size GREATER 9216)
  message(FATAL_ERROR "over the size budget")
endif()
