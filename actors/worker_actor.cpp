#include "actors/worker_actor.hpp"

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/shm_futex.hpp"

namespace cafex {

namespace {

using state_ptr = worker_actor::stateful_pointer<worker_actor_state>;

step_sink_actor sink_of(state_ptr self) {
  return caf::actor_cast<step_sink_actor>(self->state.stage->config().sink);
}

void report_failure(state_ptr self, uint64_t seq, caf::error err) {
  auto& st = self->state.st;
  spdlog::warn("rank {} failed step {}: {}", st.rank, seq, describe(err));
  self->send(sink_of(self), stepfail_atom::value, seq, int32_t{st.rank}, std::move(err));
}

/// Runs this rank's stage for step `seq` and passes the result on.
void run_step(state_ptr self, uint64_t seq, const scheduler_output& step,
              const intermediate_tensors* input) {
  auto& s = self->state;
  auto rank = int32_t{s.st.rank};
  caf::expected<worker_stage::outcome> out{caf::error{}};
  try {
    out = s.stage->run(*s.st.runner, seq, step, input);
  } catch (const std::exception& e) {
    out = make_error(errc::model_failed,
                     "rank " + std::to_string(rank) + ": execute_model threw: " + e.what());
  }
  if (!out) {
    auto err = out.error();
    if (code_of(err) != errc::none && describe(err).find("rank ") == std::string::npos)
      err = make_error(code_of(err), "rank " + std::to_string(rank) + " on node "
                                       + s.st.node_id + ": " + describe(err));
    report_failure(self, seq, std::move(err));
    return;
  }
  if (out->forward) {
    // Descriptor first, so the next stage posts its receive; then the bytes.
    auto next = caf::actor_cast<worker_actor>(s.stage->config().next);
    self->send(next, stage_atom::value, seq, step, *out->forward);
    if (auto err = s.stage->push(seq, *out)) {
      report_failure(self, seq, std::move(err));
      return;
    }
  }
  if (out->report)
    self->send(sink_of(self), result_atom::value, seq, rank, std::move(*out->report));
  else
    self->send(sink_of(self), progress_atom::value, seq, rank);
}

} // namespace

worker_actor::behavior_type worker_actor_impl(state_ptr self, worker_state st,
                                              method_table methods,
                                              const node_agent_actor& agent) {
  self->state.st = std::move(st);
  self->state.methods = std::move(methods);
  // A worker without its node agent has nobody to answer to: leave.
  self->monitor(agent);
  self->set_down_handler([self](caf::down_msg& dm) {
    spdlog::info("node agent went away ({}); worker exits", caf::to_string(dm.reason));
    self->quit(dm.reason);
  });
  return {
    [self](call_atom, const std::string& method,
           const std::string& args) -> caf::result<std::string> {
      std::lock_guard<std::mutex> guard{self->state.runner_mutex};
      auto r = invoke_method(self->state.methods, self->state.st, method, args);
      if (!r)
        return r.error();
      return std::move(*r);
    },
    [self](dag_atom, dag_config& cfg) -> caf::result<std::string> {
      auto& s = self->state;
      if (!s.st.runner)
        return make_error(errc::not_ready, "rank " + std::to_string(s.st.rank)
                                             + " has no model loaded; run load_model first");
      s.calls.reset();
      s.hot.reset();
      s.stage.reset();
      auto stage = worker_stage::open(s.st, std::move(cfg));
      if (!stage)
        return stage.error();
      s.stage = std::move(*stage);
      // Named before the hot loop starts: from then on its thread may run a step that
      // closes the communicator (a broken link, fault injection) while this one reads.
      std::string transport = s.st.tp_group->transport();
      if (!s.stage->config().shm_prefix.empty()) {
        auto hot = worker_hot_loop::start(s.st, *s.stage, s.runner_mutex);
        if (!hot)
          return hot.error();
        s.hot = std::move(*hot);
        const auto& c = s.stage->config();
        auto calls = worker_call_loop::start(
          s.st, s.methods, s.runner_mutex, c.shm_prefix,
          spin_budget(c.tp * c.num_stages + 1, std::chrono::microseconds{c.spin_us}));
        if (!calls)
          return calls.error();
        s.calls = std::move(*calls);
      }
      return transport;
    },
    [self](execute_atom, uint64_t seq, const scheduler_output& step) {
      auto& s = self->state;
      if (!s.stage || !s.stage->first())
        return; // a step from a dataflow that was torn down
      std::lock_guard<std::mutex> guard{s.runner_mutex};
      run_step(self, seq, step, nullptr);
    },
    [self](stage_atom, uint64_t seq, const scheduler_output& step, const tensor_desc& desc) {
      auto& s = self->state;
      if (!s.stage || s.stage->first())
        return;
      auto input = s.stage->receive(seq, desc);
      if (!input) {
        report_failure(self, seq, input.error());
        return;
      }
      std::lock_guard<std::mutex> guard{s.runner_mutex};
      run_step(self, seq, step, &*input);
    },
    [self](teardown_atom) -> bool {
      self->state.calls.reset();
      self->state.hot.reset();
      self->state.stage.reset();
      return true;
    },
    [self](teardown_atom, recover_atom) -> bool {
      auto& s = self->state;
      // A peer blocked in a collective this rank will never join (its step's input died
      // with the lost rank) waits for Gloo's timeout unless this rank's end of the group
      // closes. Once the hot loop has stopped nothing here uses the group.
      s.calls.reset();
      s.hot.reset();
      s.stage.reset();
      std::lock_guard<std::mutex> guard{s.runner_mutex};
      s.st.tp_group->close("the executor is recovering");
      return true;
    },
  };
}

} // namespace cafex
