# Precompiled headers (CAFEX_PCH, on by default): CAF, spdlog, fmt, nlohmann-json and the
# standard headers most translation units parse are compiled once per position-independence
# setting (GCC refuses a PCH built with other -fPIC/-fPIE flags) and force-included into
# every C++ target. A CAF-heavy file compiles in about 60% of the time (driver_actor.cpp:
# 6.2 s -> 3.6 s, December 2026, 2-core VM); the CI builds (Release and ASan) gain most.
#
# Every source still includes what it uses: clang-tidy (scripts/tidy) reads the compile
# database with the PCH flags taken out, so a missing include fails there, and
# -DCAFEX_PCH=OFF builds without them. A PCH that cannot be used is a -Winvalid-pch warning,
# an error in CAFEX_WERROR builds, never a silent slow build.
option(CAFEX_PCH "Precompile the CAF, spdlog, fmt, JSON and standard headers" ON)

set(CAFEX_PCH_HEADERS
    <caf/all.hpp> <caf/io/all.hpp> <spdlog/spdlog.h> <fmt/format.h> <nlohmann/json.hpp>
    <algorithm> <chrono> <functional> <map> <memory> <mutex> <optional> <string> <thread>
    <unordered_map> <vector>)

# The PCH targets: one position-dependent (executables), one position-independent
# (libraries with POSITION_INDEPENDENT_CODE).
function(cafex_pch_target name pic)
  set(src ${CMAKE_BINARY_DIR}/${name}.cpp)
  if(NOT EXISTS ${src})
    file(WRITE ${src} "// The translation unit that carries cafex's precompiled headers.\n")
  endif()
  add_library(${name} OBJECT ${src})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ${pic})
  target_link_libraries(${name} PRIVATE caf::core caf::io fmt::fmt spdlog::spdlog
                                        nlohmann_json::nlohmann_json)
  target_precompile_headers(${name} PRIVATE ${CAFEX_PCH_HEADERS})
endfunction()

function(cafex_targets_in dir out)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub ${subdirs})
    cafex_targets_in(${sub} more)
    list(APPEND targets ${more})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

# Called once at the end of the top-level CMakeLists.txt: every C++ target defined so far
# reuses the PCH of its position-independence setting.
function(cafex_use_precompiled_headers)
  if(NOT CAFEX_PCH)
    return()
  endif()
  cafex_pch_target(cafex_pch OFF)
  cafex_pch_target(cafex_pch_pic ON)
  cafex_targets_in(${CMAKE_SOURCE_DIR} targets)
  set(count 0)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    if(NOT type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|OBJECT_LIBRARY|SHARED_LIBRARY)$"
       OR t MATCHES "^cafex_pch(_pic)?$")
      continue()
    endif()
    # Targets with flags of their own (the libFuzzer targets' -fsanitize=fuzzer) cannot
    # share a PCH built without them.
    get_target_property(options ${t} COMPILE_OPTIONS)
    if(options MATCHES "-fsanitize=fuzzer")
      continue()
    endif()
    get_target_property(sources ${t} SOURCES)
    list(FILTER sources INCLUDE REGEX "\\.cpp$")
    if(NOT sources)
      continue()
    endif()
    # The PCH was built with spdlog's and fmt's macros (SPDLOG_FMT_EXTERNAL, ...): a target
    # that does not link them gets the same definitions, or GCC would refuse the PCH.
    target_compile_definitions(${t} PRIVATE
      $<TARGET_PROPERTY:spdlog::spdlog,INTERFACE_COMPILE_DEFINITIONS>
      $<TARGET_PROPERTY:fmt::fmt,INTERFACE_COMPILE_DEFINITIONS>)
    get_target_property(pic ${t} POSITION_INDEPENDENT_CODE)
    if(pic OR type STREQUAL "SHARED_LIBRARY")
      target_precompile_headers(${t} REUSE_FROM cafex_pch_pic)
    else()
      target_precompile_headers(${t} REUSE_FROM cafex_pch)
    endif()
    math(EXPR count "${count} + 1")
  endforeach()
  message(STATUS "cafex: precompiled headers for ${count} targets (CAFEX_PCH)")
endfunction()
