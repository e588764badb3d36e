#include "chaos/worker_faults.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/error.hpp"
#include "runtime/models/reference_model.hpp"

namespace cafex {

namespace {

/// The reference model behind every test model: each overrides only what it changes.
class reference_wrapper : public model_runner {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override {
    return inner_.load(cfg, shard, tp);
  }
  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override {
    return inner_.execute(step, input);
  }
  size_t live_requests() const override { return inner_.live_requests(); }
  bool drop_requests() override { return inner_.drop_requests(); }

private:
  reference_model inner_;
};

/// The reference model, slowed down on purpose (see register_fault_models).
class sleepy_model final : public reference_wrapper {
public:
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
    return reference_wrapper::execute(step, input);
  }
};

/// The reference model, except that load fails on TP rank 1: start-up must fail cleanly.
class failing_load_model final : public reference_wrapper {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override {
    if (shard.tp_rank == 1)
      return make_error(errc::model_failed, "rank 1 was told to fail load_model");
    return reference_wrapper::load(cfg, shard, tp);
  }
};

/// How long slow_load's load_model takes on every rank.
constexpr std::chrono::milliseconds slow_load_time{1000};

/// The reference model, with a load_model that takes slow_load_time on every rank: room
/// for a start-up fault to land while the model loads.
class slow_load_model final : public reference_wrapper {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override {
    std::this_thread::sleep_for(slow_load_time);
    return reference_wrapper::load(cfg, shard, tp);
  }
};

int my_rank(const worker_state& st) {
  return st.rank >= 0 ? st.rank : st.rpc_rank;
}

/// The rank a fault method targets: {"rank": R} (required, an integer).
caf::expected<int> target(const json& a, const char* method) {
  if (!a.is_object() || !a.contains("rank") || !a["rank"].is_number_integer())
    return make_error(errc::invalid_argument,
                      std::string(method) + " expects {\"rank\": R} with an integer rank");
  return a["rank"].get<int>();
}

std::string who(const worker_state& st) {
  return "rank " + std::to_string(my_rank(st)) + " on node " + st.node_id;
}

} // namespace

bool fault_injection_enabled(const char* value) {
  return value != nullptr && std::strcmp(value, "1") == 0;
}

method_table fault_methods() {
  method_table t;
  t.add("fault.break_collective", [](worker_state& st, const json& a) -> caf::expected<json> {
    auto r = target(a, "fault.break_collective");
    if (!r)
      return r.error();
    if (*r == my_rank(st))
      st.tp_group->inject_break();
    return json(my_rank(st));
  });
  t.add("fault.delay", [](worker_state& st, const json& a) -> caf::expected<json> {
    auto r = target(a, "fault.delay");
    if (!r)
      return r.error();
    int ms = a.value("ms", 0);
    int steps = a.value("steps", 1);
    if (ms < 0 || steps < 0)
      return make_error(errc::invalid_argument, "fault.delay expects ms >= 0 and steps >= 0");
    if (*r == my_rank(st)) {
      st.faults->delay_steps(ms, steps);
      st.tp_group->inject_delay(ms, steps);
    }
    return json(my_rank(st));
  });
  t.add("fault.die_in", [](worker_state& st, const json& a) -> caf::expected<json> {
    auto r = target(a, "fault.die_in");
    if (!r)
      return r.error();
    if (!a.contains("method") || !a["method"].is_string()
        || a["method"].get<std::string>().empty())
      return make_error(errc::invalid_argument,
                        "fault.die_in expects {\"rank\": R, \"method\": NAME}");
    if (*r == my_rank(st))
      st.faults->die_in(a["method"].get<std::string>());
    return json(my_rank(st));
  });
  t.add("fault.die_before_forward",
        [](worker_state& st, const json& a) -> caf::expected<json> {
          auto r = target(a, "fault.die_before_forward");
          if (!r)
            return r.error();
          if (*r == my_rank(st))
            st.faults->die_before_forward();
          return json(my_rank(st));
        });
  t.add("fault.fail", [](worker_state& st, const json& a) -> caf::expected<json> {
    auto r = target(a, "fault.fail");
    if (!r)
      return r.error();
    if (*r == my_rank(st))
      return make_error(errc::method_failed, who(st) + " was told to fail (fault.fail)");
    return json(my_rank(st));
  });
  t.add("fault.throw", [](worker_state& st, const json& a) -> caf::expected<json> {
    auto r = target(a, "fault.throw");
    if (!r)
      return r.error();
    if (*r == my_rank(st))
      throw std::runtime_error("thrown on purpose (fault.throw)");
    return json(my_rank(st));
  });
  return t;
}

void register_fault_models() {
  auto& reg = model_registry::instance();
  reg.add("sleepy", [] { return std::make_unique<sleepy_model>(); });
  reg.add("failing_load", [] { return std::make_unique<failing_load_model>(); });
  reg.add("slow_load", [] { return std::make_unique<slow_load_model>(); });
}

} // namespace cafex
