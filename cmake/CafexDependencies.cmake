# Finds the Debian packages cafex builds with (scripts/bootstrap installs them).
# Debian's libcaf-dev 0.17.6 ships no CMake package: find headers and libraries here.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

include(CafexFindCAF)

find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(Gloo REQUIRED)
find_package(Boost 1.81 EXACT REQUIRED)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)

find_path(DOCTEST_INCLUDE_DIR doctest/doctest.h)

# CUDA is optional: GPU code builds when the toolkit is found.
set(CAFEX_HAVE_CUDA OFF)
if(CAFEX_WITH_CUDA)
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include)
    find_library(NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib /usr/local/cuda/lib64)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(CAFEX_HAVE_CUDA ON)
    endif()
  endif()
endif()
message(STATUS "cafex: CUDA/NCCL code ${CAFEX_HAVE_CUDA}")

# With CUDA: the CUDA language (sm_90 unless CMAKE_CUDA_ARCHITECTURES says otherwise),
# cudart linked statically, NCCL dynamically (the GPU machine has its own libnccl.so.2).
# cuBLAS is not linked: runtime/models/cuda/cuda_blas.cpp opens libcublas.so at run time, so binaries
# start on machines without it and a missing cuBLAS is an error value, not a loader abort.
# Everything CUDA comes through the `cafex::cuda` target, which also defines
# CAFEX_HAVE_CUDA=1 for the code.
if(CAFEX_HAVE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_library(cafex::cuda INTERFACE IMPORTED)
  target_include_directories(cafex::cuda INTERFACE ${CUDAToolkit_INCLUDE_DIRS} ${NCCL_INCLUDE_DIR})
  target_link_libraries(cafex::cuda INTERFACE CUDA::cudart_static ${NCCL_LIBRARY} ${CMAKE_DL_LIBS})
  target_compile_definitions(cafex::cuda INTERFACE CAFEX_HAVE_CUDA=1)
  message(STATUS "cafex: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${NCCL_LIBRARY}")
endif()
