// A worker's stage over fake channels: tensors go out of band, the descriptor says what
// arrives, failures of the channel become step errors.
#include <doctest/doctest.h>

#include "actors/worker_stage.hpp"
#include "runtime/error.hpp"
#include "runtime/models/reference_model.hpp"
#include "transport/fake_channel.hpp"

using namespace cafex;

namespace {

dag_config stage_cfg(int stage, int stages) {
  dag_config c;
  c.stage = stage;
  c.num_stages = stages;
  return c;
}

scheduler_output one_request() {
  scheduler_output s;
  s.step_id = 4;
  s.new_requests.push_back(new_request{"a", {1, 2, 3}});
  return s;
}

struct two_stages {
  fake_channel_pair pair{std::chrono::milliseconds(500)};
  solo_collective tp0, tp1;
  reference_model m0, m1;
  std::unique_ptr<worker_stage> s0, s1;
  two_stages() {
    model_config cfg;
    REQUIRE_FALSE(m0.load(cfg, shard_info{0, 1, 0, 2}, tp0));
    REQUIRE_FALSE(m1.load(cfg, shard_info{0, 1, 1, 2}, tp1));
    s0 = std::make_unique<worker_stage>(stage_cfg(0, 2), 0, 0, nullptr, pair.upstream());
    s1 = std::make_unique<worker_stage>(stage_cfg(1, 2), 1, 0, pair.downstream(), nullptr);
  }
};

} // namespace

TEST_CASE("a stage forwards a descriptor and pushes the bytes out of band") {
  two_stages t;
  auto out0 = t.s0->run(t.m0, 7, one_request(), nullptr);
  REQUIRE(out0);
  REQUIRE(out0->forward);
  CHECK_FALSE(out0->report);
  CHECK(out0->forward->step_id == 7);
  CHECK(out0->forward->shape == std::vector<int64_t>{3, 128});
  CHECK(out0->forward->byte_size == 3 * 128 * 4);
  REQUIRE_FALSE(t.s0->push(7, *out0));
  CHECK(t.pair.sends() == 1);
  auto in = t.s1->receive(7, *out0->forward);
  REQUIRE(in);
  CHECK(in->hidden == out0->tensors.hidden);
  auto out1 = t.s1->run(t.m1, 7, one_request(), &*in);
  REQUIRE(out1);
  REQUIRE(out1->report);
  CHECK(out1->report->sampled.size() == 1);
  CHECK(out1->report->step_id == 4);
}

TEST_CASE("a malformed descriptor or a failing channel is an error, not a hang") {
  two_stages t;
  auto out0 = t.s0->run(t.m0, 1, one_request(), nullptr);
  REQUIRE(out0);
  auto bad = *out0->forward;
  bad.byte_size += 4;
  CHECK_FALSE(t.s1->receive(1, bad));
  auto wrong_step = *out0->forward;
  CHECK_FALSE(t.s1->receive(2, wrong_step));
  t.pair.fail_next(1);
  auto err = t.s0->push(1, *out0);
  REQUIRE(err);
  CHECK(code_of(err) == errc::transport_failed);
  // Nothing was sent: the receiver times out within its deadline.
  auto r = t.s1->receive(1, *out0->forward);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
}

TEST_CASE("an empty step moves no bytes") {
  two_stages t;
  scheduler_output empty;
  auto out0 = t.s0->run(t.m0, 3, empty, nullptr);
  REQUIRE(out0);
  CHECK(out0->forward->byte_size == 0);
  REQUIRE_FALSE(t.s0->push(3, *out0));
  CHECK(t.pair.sends() == 0);
  auto in = t.s1->receive(3, *out0->forward);
  REQUIRE(in);
  auto out1 = t.s1->run(t.m1, 3, empty, &*in);
  REQUIRE(out1);
  CHECK(out1->report->sampled.empty());
}

TEST_CASE("channel types are validated like the seed's") {
  CHECK(parse_channel_type("auto"));
  CHECK(parse_channel_type("nccl"));
  CHECK(parse_channel_type("gloo"));
  CHECK(parse_channel_type("shm"));
  auto bad = parse_channel_type("rdma");
  REQUIRE_FALSE(bad);
  CHECK(describe(bad.error()).find("auto, nccl, tcp, gloo and shm") != std::string::npos);
  CHECK(resolve_channel_type(channel_type::automatic, "cpu") == channel_type::tcp);
  REQUIRE(parse_channel_type("tcp"));
  CHECK(*parse_channel_type("tcp") == channel_type::tcp);
  CHECK(resolve_channel_type(channel_type::automatic, "cuda") == channel_type::nccl);
  CHECK(resolve_channel_type(channel_type::gloo, "cuda") == channel_type::gloo);
}
