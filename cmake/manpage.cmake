# The man page tinysse(1): written by the built binary (`tinysse --man`,
# core/usage.c) from the same option table as --help (core/config.c), so the
# two cannot drift; and its test, man_page (spec/man/man_page.sh). Included
# from the top-level CMakeLists.txt, after the tinysse target:
#   include(cmake/manpage.cmake OPTIONAL)
# which leaves ${PROJECT_BINARY_DIR}/tinysse.1 for install(). The same file,
# run with cmake -P, is the step that writes the page.

if(CMAKE_SCRIPT_MODE_FILE)
  # cmake -DBIN=<tinysse> -DOUT=<tinysse.1> -P manpage.cmake: the page goes
  # to a temporary file first, so a failed run leaves no half-written page.
  execute_process(COMMAND ${BIN} --man OUTPUT_FILE ${OUT}.tmp RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    file(REMOVE ${OUT}.tmp)
    message(FATAL_ERROR "${BIN} --man failed (${rc})")
  endif()
  file(RENAME ${OUT}.tmp ${OUT})
  return()
endif()

# Rewritten whenever tinysse is rebuilt (DEPENDS on the target). The date in
# it is SOURCE_DATE_EPOCH's when the build environment sets it.
add_custom_command(
  OUTPUT ${PROJECT_BINARY_DIR}/tinysse.1
  COMMAND ${CMAKE_COMMAND} -DBIN=$<TARGET_FILE:tinysse> -DOUT=${PROJECT_BINARY_DIR}/tinysse.1
          -P ${CMAKE_CURRENT_LIST_FILE}
  DEPENDS tinysse ${CMAKE_CURRENT_LIST_FILE}
  COMMENT "Writing the man page tinysse.1 (tinysse --man)"
  VERBATIM)
add_custom_target(tinysse_man ALL DEPENDS ${PROJECT_BINARY_DIR}/tinysse.1)

# The page renders without a warning (groff -ww, man -l, mandoc -Tlint:
# whichever are installed; skipped when none is), is what the binary writes
# now, and documents every option --help lists, with its value's name.
enable_testing()
add_test(NAME man_page
  COMMAND sh ${PROJECT_SOURCE_DIR}/spec/man/man_page.sh $<TARGET_FILE:tinysse>
          ${PROJECT_BINARY_DIR}/tinysse.1)
set_tests_properties(man_page PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 60)
