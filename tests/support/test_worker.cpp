// A worker program with extra methods for tests, the way a host program registers its
// own: `cafex_test_worker worker ...` runs worker_main with these added.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/worker_main.hpp"
#include "runtime/error.hpp"
#include "runtime/reference_model.hpp"

using namespace cafex;

namespace {

/// The reference model, slowed down on purpose: a step that holds a request named
/// "sleepN-..." sleeps N ms on every stage. Tests use it to keep steps in flight.
class sleepy_model final : public model_runner {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override {
    return inner_.load(cfg, shard, tp);
  }
  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override {
    int ms = 0;
    auto scan = [&](const std::string& id) {
      if (id.rfind("sleep", 0) == 0)
        ms = std::max(ms, std::atoi(id.c_str() + 5));
    };
    for (auto& r : step.new_requests)
      scan(r.req_id);
    for (auto& r : step.cached_requests)
      scan(r.req_id);
    if (ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return inner_.execute(step, input);
  }
  size_t live_requests() const override { return inner_.live_requests(); }

private:
  reference_model inner_;
};

/// The reference model, except that load fails on TP rank 1: start-up must fail cleanly.
class failing_load_model final : public model_runner {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override {
    if (shard.tp_rank == 1)
      return make_error(errc::model_failed, "rank 1 was told to fail load_model");
    return inner_.load(cfg, shard, tp);
  }
  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override {
    return inner_.execute(step, input);
  }
  size_t live_requests() const override { return inner_.live_requests(); }

private:
  reference_model inner_;
};

} // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "worker") {
    std::fprintf(stderr, "usage: cafex_test_worker worker ...\n");
    return 2;
  }
  model_registry::instance().add("sleepy", [] { return std::make_unique<sleepy_model>(); });
  model_registry::instance().add("failing_load",
                                 [] { return std::make_unique<failing_load_model>(); });
  method_table extra;
  // {"ms": N, "rank": R}: sleeps N ms (only on rank R when given), answers the rank.
  extra.add("sleep_ms", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (!a.contains("rank") || a["rank"].get<int>() == st.rpc_rank)
      std::this_thread::sleep_for(std::chrono::milliseconds(a.value("ms", 0)));
    return json(st.rpc_rank);
  });
  extra.add("fail_on", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (a.get<int>() == st.rpc_rank)
      return make_error(errc::method_failed, "rank " + std::to_string(st.rpc_rank)
                                               + " was told to fail");
    return json(st.rpc_rank);
  });
  extra.add("throw", [](worker_state&, const json&) -> caf::expected<json> {
    throw std::runtime_error("thrown on purpose");
  });
  // {"rank": R}: breaks rank R's TP communicator (its next all-reduce fails, the link
  // closes); reinitialize_distributed rebuilds it.
  extra.add("break_tp", [](worker_state& st, const json& a) -> caf::expected<json> {
    if (a.value("rank", -1) == st.rpc_rank)
      st.tp_group->inject_break();
    return json(st.rpc_rank);
  });
  return worker_main(argc, argv, 2, extra);
}
