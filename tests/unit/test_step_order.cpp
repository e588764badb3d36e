#include <doctest/doctest.h>

#include "runtime/dataflow/kv_aggregator.hpp"
#include "runtime/dataflow/step_order.hpp"

using namespace cafex;

TEST_CASE("the step window admits at most max_in_flight steps") {
  step_window w(2);
  CHECK(w.can_dispatch());
  CHECK(w.dispatch() == 0);
  CHECK(w.dispatch() == 1);
  CHECK_FALSE(w.can_dispatch());
  CHECK(w.in_flight() == 2);
  w.complete();
  CHECK(w.can_dispatch());
  CHECK(w.dispatch() == 2);
  CHECK(w.max_observed() == 2);
  step_window zero(0);
  CHECK(zero.max_in_flight() == 1);
}

TEST_CASE("results are released in step order even when a later step finishes first") {
  in_order_buffer<int> buf;
  buf.put(1, 11);
  buf.put(2, 12);
  CHECK(buf.pop_ready().empty());
  buf.put(0, 10);
  auto ready = buf.pop_ready();
  REQUIRE(ready.size() == 3);
  CHECK(ready[0] == std::make_pair(uint64_t{0}, 10));
  CHECK(ready[1] == std::make_pair(uint64_t{1}, 11));
  CHECK(ready[2] == std::make_pair(uint64_t{2}, 12));
  buf.put(4, 14);
  CHECK(buf.pop_ready().empty());
  buf.reset(4);
  CHECK(buf.waiting() == 0);
  buf.put(4, 14);
  CHECK(buf.pop_ready().size() == 1);
}

namespace {

model_runner_output out_with(std::vector<std::string> sending,
                             std::vector<std::string> recving,
                             std::vector<int32_t> tokens = {}) {
  model_runner_output o;
  o.finished_sending = std::move(sending);
  o.finished_recving = std::move(recving);
  o.sampled = std::move(tokens);
  return o;
}

} // namespace

TEST_CASE("the KV aggregator reports a request only when every worker did") {
  kv_output_aggregator agg(3);
  // Step 1: two of three workers finished sending "a"; one finished receiving "b".
  auto r1 = agg.aggregate(
    {out_with({"a"}, {}, {7}), out_with({"a"}, {"b"}), out_with({}, {})});
  CHECK(r1.sampled == std::vector<int32_t>{7});
  CHECK(r1.finished_sending.empty());
  CHECK(r1.finished_recving.empty());
  CHECK(agg.pending() == 2);
  // Step 2: the last worker reports "a"; "b" still lacks two workers.
  auto r2 = agg.aggregate({out_with({}, {"b"}), out_with({}, {}), out_with({"a"}, {})});
  CHECK(r2.finished_sending == std::vector<std::string>{"a"});
  CHECK(r2.finished_recving.empty());
  auto r3 = agg.aggregate({out_with({}, {}), out_with({}, {}), out_with({}, {"b"})});
  CHECK(r3.finished_recving == std::vector<std::string>{"b"});
  CHECK(agg.pending() == 0);
}

TEST_CASE("the KV aggregator takes the tokens of the output rank") {
  kv_output_aggregator agg(2);
  auto r = agg.aggregate({out_with({}, {}, {1}), out_with({}, {}, {2})}, 1);
  CHECK(r.sampled == std::vector<int32_t>{2});
}
