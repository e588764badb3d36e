// cafex run's built-in workload, including the re-prefill after a recovery.
#include <doctest/doctest.h>

#include "runtime/models/workload.hpp"

using namespace cafex;

TEST_CASE(
  "the demo workload prefills, decodes, and re-prefills prompt + tokens after recovery") {
  demo_workload w(3, 2, 512);
  auto s0 = w.next_step();
  REQUIRE(s0.new_requests.size() == 2);
  CHECK(s0.new_requests[0].prompt == demo_workload::prompt(3, 0, 512));
  model_runner_output out;
  out.req_ids = {"req-0", "req-1"};
  out.sampled = {7, 9};
  w.observe(out);
  auto s1 = w.next_step();
  REQUIRE(s1.cached_requests.size() == 2);
  CHECK(s1.cached_requests[1].token == 9);
  out.sampled = {11, 13};
  w.observe(out);
  w.recompute();
  auto s2 = w.next_step();
  CHECK(s2.cached_requests.empty());
  REQUIRE(s2.new_requests.size() == 2);
  auto want = demo_workload::prompt(3, 1, 512);
  want.insert(want.end(), {9, 13});
  CHECK(s2.new_requests[1].req_id == "req-1");
  CHECK(s2.new_requests[1].prompt == want);
  out.sampled = {15, 17};
  w.observe(out);
  auto s3 = w.next_step();
  REQUIRE(s3.cached_requests.size() == 2);
  CHECK(s3.cached_requests[0].token == 15);
}
