# ctest entry install.find_package: installs the build into a fresh prefix, then
# configures, builds and runs tests/install/consumer against it.
# -DBUILD_DIR=<cafex build> -DCONSUMER_DIR=<consumer source> -DWORK_DIR=<scratch>
# [-DCXX=<compiler>: also list what the public header includes]
foreach(v BUILD_DIR CONSUMER_DIR WORK_DIR)
  if(NOT ${v})
    message(FATAL_ERROR "run_install_test.cmake needs -D${v}=...")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 240)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_out "${out}" PARENT_SCOPE)
endfunction()

step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/cafex/cafex/executor.hpp include/cafex/cafex/asio.hpp
          include/cafex/cafex/worker.hpp include/cafex/runtime/dataflow/scheduler_output.hpp
          lib/libcafex.a lib/libcafex_runtime.a bin/cafex
          lib/cmake/cafex/cafexConfig.cmake lib/pkgconfig/cafex.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

# Only public headers are installed (the consumer below compiles against them alone), and
# none of them reaches the actor system: no installed header includes CAF's all.hpp or
# its io module, and the preprocessor's list of what executor.hpp pulls in has neither
# (nor spdlog, nor Asio: a host includes those itself if it wants them).
file(GLOB_RECURSE installed_headers ${prefix}/include/*.hpp)
foreach(h ${installed_headers})
  file(STRINGS ${h} hits REGEX "#[ \t]*include[ \t]*[<\"](caf/all|caf/io/)")
  if(hits)
    message(FATAL_ERROR "installed header ${h} includes the actor system: ${hits}")
  endif()
  foreach(private actors/driver_actor.hpp actors/cluster/cluster.hpp cafex/executor_impl.hpp)
    if(h MATCHES "/include/cafex/${private}$")
      message(FATAL_ERROR "cmake --install installed the private header ${private}")
    endif()
  endforeach()
endforeach()
if(CXX)
  step("list what cafex/executor.hpp includes" ${CXX} -std=c++17 -M -x c++
       -I${prefix}/include/cafex ${prefix}/include/cafex/cafex/executor.hpp)
  foreach(forbidden "caf/all.hpp" "caf/io/" "spdlog/" "boost/asio" "/actors/driver_"
                    "/transport/rendezvous")
    string(FIND "${step_out}" "${forbidden}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "cafex/executor.hpp reaches ${forbidden}:\n${step_out}")
    endif()
  endforeach()
  string(FIND "${step_out}" "caf/expected.hpp" at)
  if(at EQUAL -1)  # the check above would pass on an empty list too
    message(FATAL_ERROR "the dependency list of cafex/executor.hpp is incomplete:\n${step_out}")
  endif()
endif()
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
step("configure the consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix})
step("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build -j2)
step("run the pkg-config consumer" ${WORK_DIR}/build/consumer_pc)
if(NOT step_out MATCHES "pkg-config works")
  message(FATAL_ERROR "consumer_pc printed: ${step_out}")
endif()
step("run the consumer" ${WORK_DIR}/build/consumer)
if(NOT step_out MATCHES "(^|\n)token [0-9]+")
  message(FATAL_ERROR "consumer printed: ${step_out}")
endif()
message(STATUS "installed cafex works from another project: ${step_out}")
file(REMOVE_RECURSE ${WORK_DIR})
