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
  if("undefined" IN_LIST cafex_sanitizer_list)
    # UBSan without its null, alignment and vptr checks: they instrument every pointer
    # dereference and member call, which made a CAF-heavy file 2.9x slower to compile
    # (actors/driver_actor.cpp at -O1 -g1: ASan alone 6.7 s, + full UBSan 19.5 s, + UBSan
    # without these three 8.0 s; GCC 12, December 2026) and put the sanitizer suite past
    # CI's budget. A null dereference still ends in ASan's SEGV report with its stack;
    # misaligned loads are what x86 does anyway; the other UBSan checks (signed overflow,
    # shifts, bounds, bool/enum loads, float casts, pointer overflow, ...) stay.
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize=null,alignment,vptr>)
  endif()
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

# The linker: LLVM's lld where it is installed (scripts/bootstrap installs it), GNU ld
# otherwise. About a hundred test programs link against the static cafex libraries; lld
# links one in 0.12 s where GNU ld takes 0.59 s (tests/integration/test_direct_lane,
# Release, 2-core VM, December 2026). -DCAFEX_LINKER=default keeps the compiler's own.
set(CAFEX_LINKER "auto" CACHE STRING "Linker for C++ programs: auto (lld if it works), lld or default")
set_property(CACHE CAFEX_LINKER PROPERTY STRINGS auto lld default)
if(NOT CAFEX_LINKER MATCHES "^(auto|lld|default)$")
  message(FATAL_ERROR "CAFEX_LINKER: '${CAFEX_LINKER}' is not auto, lld or default")
endif()
if(NOT CAFEX_LINKER STREQUAL "default")
  include(CheckLinkerFlag)
  check_linker_flag(CXX "-fuse-ld=lld" CAFEX_HAVE_LLD)
  if(CAFEX_HAVE_LLD)
    add_link_options($<$<LINK_LANGUAGE:CXX>:-fuse-ld=lld>)
  elseif(CAFEX_LINKER STREQUAL "lld")
    message(FATAL_ERROR "CAFEX_LINKER=lld, but the compiler cannot link with -fuse-ld=lld; "
                        "install lld (scripts/bootstrap) or use -DCAFEX_LINKER=auto")
  endif()
endif()
