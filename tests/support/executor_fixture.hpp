// Shared by the executor integration tests: options for the embedded default cluster
// with the test worker program, and a start that fails the test with the error's text.
#pragma once

#include <chrono>
#include <memory>

#include <doctest/doctest.h>

#include "cafex/executor.hpp"
#include "processes.hpp"

namespace cafex::test {

inline executor_options test_options(int tp, int pp = 1) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.parallel.pipeline_parallel_size = pp;
  o.worker_program = binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "warn";
  o.start_timeout = std::chrono::seconds(60);
  return o;
}

inline std::unique_ptr<executor> start_or_fail(executor_options o) {
  auto ex = executor::start(std::move(o));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  return std::move(*ex);
}

} // namespace cafex::test
