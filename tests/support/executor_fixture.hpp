// Shared by the executor integration tests: options for the embedded default cluster
// with the test worker program, and a start that fails the test with the error's text.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unistd.h>

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

/// The recovery tests' options: tp x pp CPU workers under the restart policy, liveness at
/// a 1 s connection timeout, quiet logs. start_timeout bounds each recovery attempt, and
/// so each rank's rendezvous in it.
inline executor_options restart_options(int tp, int pp, int max_restarts) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.parallel.pipeline_parallel_size = pp;
  o.worker_program = binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "off";
  o.on_worker_failure = failure_policy::restart;
  o.max_restarts = max_restarts;
  o.liveness.connection_timeout = std::chrono::milliseconds{1000};
  o.start_timeout = std::chrono::seconds{30};
  return o;
}

/// A step that schedules the new request "r<id>" with a fixed five-token prompt.
inline scheduler_output prefill(uint64_t id) {
  scheduler_output s;
  s.step_id = id;
  s.new_requests.push_back({"r" + std::to_string(id), {5, 9, 2, 7, 1}});
  return s;
}

/// A step for the "sleepy" test model: request "sleep<ms>-r<id>" makes every rank sleep
/// `ms` in its forward pass.
inline scheduler_output sleepy_step(uint64_t id, int ms) {
  scheduler_output s;
  s.step_id = id;
  s.new_requests.push_back(
    new_request{"sleep" + std::to_string(ms) + "-r" + std::to_string(id), {1, 2, 3, 4}});
  return s;
}

/// Every child of this (subreaper) process has ended and been reaped, within 15 s.
inline void no_children_left() {
  CHECK(wait_until(
    [] {
      reap_zombies();
      return children_of(getpid()).empty();
    },
    std::chrono::seconds{15}));
}

inline std::unique_ptr<executor> start_or_fail(executor_options o) {
  auto ex = executor::start(std::move(o));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  return std::move(*ex);
}

} // namespace cafex::test
