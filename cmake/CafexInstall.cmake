# `cmake --install`: the public headers, static libraries, the cafex program, a CMake
# package (find_package(cafex) -> cafex::cafex) and a pkg-config file (cafex.pc). Headers
# go to <prefix>/include/cafex/{cafex,runtime,actors,transport,chaos}, so
# `#include "cafex/executor.hpp"` works with -I<prefix>/include/cafex and nothing else
# lands in <prefix>/include.
include(CMakePackageConfigHelpers)

set_target_properties(cafex PROPERTIES EXPORT_NAME cafex)
set_target_properties(cafex_actors PROPERTIES EXPORT_NAME actors)
set_target_properties(cafex_transport PROPERTIES EXPORT_NAME transport)
set_target_properties(cafex_runtime PROPERTIES EXPORT_NAME runtime)
set_target_properties(cafex_cli PROPERTIES EXPORT_NAME program)

install(TARGETS cafex cafex_actors cafex_transport cafex_runtime cafex_cli
        EXPORT cafexTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The public headers and the type headers they include, nothing else: the actors, the
# actor system (<caf/all.hpp>) and the transports stay private to the libraries.
# tests/install checks that a consumer compiles against exactly these and that none of
# them includes caf/all.hpp. A header that a public one starts to include goes here too.
set(CAFEX_PUBLIC_HEADERS
    cafex/executor.hpp cafex/asio.hpp cafex/worker.hpp
    actors/cluster/cluster_options.hpp actors/liveness_options.hpp
    actors/worker_main.hpp actors/worker_methods.hpp
    chaos/fault_hooks.hpp
    runtime/defaults.hpp runtime/error.hpp runtime/failure_cause.hpp runtime/health.hpp
    runtime/log_sink.hpp
    runtime/dataflow/scheduler_output.hpp
    runtime/models/collective.hpp runtime/models/generation.hpp
    runtime/models/model_config.hpp runtime/models/sampling.hpp
    runtime/models/model_runner.hpp runtime/models/rebindable_collective.hpp
    runtime/plan/cluster_spec.hpp runtime/plan/env_policy.hpp runtime/plan/placement.hpp
    runtime/plan/rank_plan.hpp
    transport/link_security.hpp)
foreach(header ${CAFEX_PUBLIC_HEADERS})
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${header} DESTINATION ${CAFEX_INSTALL_INCLUDEDIR}/${dir})
endforeach()

set(CAFEX_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/cafex)
install(EXPORT cafexTargets NAMESPACE cafex:: DESTINATION ${CAFEX_CMAKE_DIR})
configure_package_config_file(cmake/cafexConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/cafexConfig.cmake INSTALL_DESTINATION ${CAFEX_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/cafexConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/cafexConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/cafexConfigVersion.cmake
              cmake/CafexFindCAF.cmake
        DESTINATION ${CAFEX_CMAKE_DIR})

# With CUDA, the static libraries also need the CUDA runtime and NCCL.
set(CAFEX_PC_CUDA_CFLAGS "")
set(CAFEX_PC_CUDA_LIBS "")
if(CAFEX_HAVE_CUDA)
  get_filename_component(_cafex_nccl_dir ${NCCL_LIBRARY} DIRECTORY)
  set(CAFEX_PC_CUDA_CFLAGS "-DCAFEX_HAVE_CUDA=1 -I${CUDAToolkit_INCLUDE_DIRS}")
  set(CAFEX_PC_CUDA_LIBS
      "-L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -L${_cafex_nccl_dir} -lnccl -ldl -lrt")
endif()
configure_file(cmake/cafex.pc.in ${CMAKE_CURRENT_BINARY_DIR}/cafex.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/cafex.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
