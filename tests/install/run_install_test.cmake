# ctest entry install.find_package: installs the build into a fresh prefix, then
# configures, builds and runs tests/install/consumer against it.
# -DBUILD_DIR=<cafex build> -DCONSUMER_DIR=<consumer source> -DWORK_DIR=<scratch>
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
