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
