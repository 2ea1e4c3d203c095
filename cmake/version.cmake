# Writes ${OUT}: lmkit's version string with the commit the tree is at, run at every build (not
# only at configure), so a program's --version and lm-bench's header name the commit it was built
# from. configure_file rewrites the file only when the text changes: one small file recompiles
# when the commit does, nothing otherwise.
execute_process(COMMAND git describe --always --dirty --tags WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE LMKIT_GIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(LMKIT_GIT)
  set(LMKIT_VERSION_STRING "${PROJECT_VERSION} (${LMKIT_GIT})")
else()
  set(LMKIT_VERSION_STRING "${PROJECT_VERSION}")
endif()
configure_file(${SOURCE_DIR}/lib/version.cpp.in ${OUT} @ONLY)
