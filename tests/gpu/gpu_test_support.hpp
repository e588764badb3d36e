// Helpers shared by the GPU tests: skipping cleanly without GPUs, and running one body
// per rank on its own thread with a bound, so a hang fails the test instead of eating
// the ctest timeout.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "runtime/models/cuda/cuda_memory.hpp"

/// Returns from the test case (with a MESSAGE, not a failure) when fewer than `n` GPUs
/// are visible: CI machines have the toolkit but no GPU.
#define CAFEX_REQUIRE_GPUS(n)                                                                 \
  do {                                                                                        \
    const int cafex_gpus_ = ::cafex::cuda_device_count();                                     \
    if (cafex_gpus_ < (n)) {                                                                  \
      MESSAGE("skipped: needs " << (n) << " GPU(s), this machine has " << cafex_gpus_);       \
      return;                                                                                 \
    }                                                                                         \
  } while (false)

namespace cafex::test {

/// Runs body(rank) for every rank on its own thread; "" means the rank passed. A rank
/// that does not finish within `bound` is reported (its thread is left to the process).
inline std::vector<std::string>
run_ranks(int ranks, const std::function<std::string(int)>& body,
          std::chrono::seconds bound = std::chrono::seconds{120}) {
  std::vector<std::future<std::string>> futures;
  for (int r = 0; r < ranks; ++r)
    futures.push_back(std::async(std::launch::async, body, r));
  std::vector<std::string> out;
  for (int r = 0; r < ranks; ++r) {
    if (futures[r].wait_for(bound) != std::future_status::ready) {
      out.push_back("rank " + std::to_string(r) + " did not finish within "
                    + std::to_string(bound.count()) + " s");
      // std::async's future blocks in its destructor until the thread ends: leak it.
      new std::future<std::string>(std::move(futures[r]));
      continue;
    }
    out.push_back(futures[r].get());
  }
  return out;
}

inline void check_all_passed(const std::vector<std::string>& results) {
  for (const auto& r : results)
    CHECK_MESSAGE(r.empty(), r);
}

} // namespace cafex::test
