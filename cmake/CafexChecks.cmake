# Build-wide checks: sanitizers (CAFEX_SANITIZERS) and warnings as errors (CAFEX_WERROR).
# Both apply to every cafex target, so worker processes started by the tests are the same
# instrumented binaries as the tests themselves.

set(CAFEX_SANITIZERS "" CACHE STRING
    "Sanitizers to build with: empty, address,undefined or thread (comma-separated list)")
set_property(CACHE CAFEX_SANITIZERS PROPERTY STRINGS "" "address,undefined" "thread")
option(CAFEX_WERROR "Treat compiler warnings as errors (CI builds turn this on)" OFF)

if(CAFEX_SANITIZERS)
  string(REPLACE "," ";" cafex_sanitizer_list "${CAFEX_SANITIZERS}")
  foreach(s ${cafex_sanitizer_list})
    if(NOT s MATCHES "^(address|undefined|leak|thread)$")
      message(FATAL_ERROR "CAFEX_SANITIZERS: unknown sanitizer '${s}' in '${CAFEX_SANITIZERS}'; "
                          "use address,undefined or thread")
    endif()
  endforeach()
  if("thread" IN_LIST cafex_sanitizer_list AND "address" IN_LIST cafex_sanitizer_list)
    message(FATAL_ERROR "CAFEX_SANITIZERS: thread cannot be combined with address; "
                        "build them in separate trees (build-asan/, build-tsan/)")
  endif()
  # Frame pointers keep the sanitizers' stack traces whole at little cost. CUDA sources
  # (nvcc) stay uninstrumented: sanitizer builds are CPU-only (-DCAFEX_WITH_CUDA=OFF).
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${CAFEX_SANITIZERS}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${CAFEX_SANITIZERS})
  if("thread" IN_LIST cafex_sanitizer_list)
    # GCC warns (-Wtsan) that TSan does not model std::atomic_thread_fence, which Boost.Asio
    # uses in every handler; the warning is about Asio's headers, not cafex's code, and
    # would fail a CAFEX_WERROR build.
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wno-tsan>)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12 at -O1 with -fsanitize=address,undefined reports -Wmaybe-uninitialized inside
    # libstdc++'s <regex> (std::function moved in _NFA::_M_insert_*): a known false
    # positive of that flag under sanitizers, in system headers' template code; Release
    # builds keep the warning.
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized>)
  endif()
  message(STATUS "cafex: sanitizers ${CAFEX_SANITIZERS}")
endif()

if(CAFEX_WERROR)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Werror>
                      $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror>)
endif()
