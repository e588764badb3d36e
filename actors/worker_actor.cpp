#include "actors/worker_actor.hpp"

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"

namespace cafex {

worker_actor::behavior_type
worker_actor_impl(worker_actor::stateful_pointer<worker_actor_state> self, worker_state st,
                  method_table methods, node_agent_actor agent) {
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
      auto r = invoke_method(self->state.methods, self->state.st, method, args);
      if (!r)
        return r.error();
      return std::move(*r);
    },
    [self](execute_atom, const scheduler_output& step) -> caf::result<model_runner_output> {
      auto& st = self->state.st;
      if (!st.runner)
        return make_error(errc::not_ready, "rank " + std::to_string(st.rank)
                                             + " has no model loaded; run load_model first");
      try {
        auto r = st.runner->execute(step, nullptr);
        if (!r)
          return r.error();
        return std::move(r->output);
      } catch (const std::exception& e) {
        return make_error(errc::model_failed, "rank " + std::to_string(st.rank)
                                                + ": execute_model threw: " + e.what());
      }
    },
  };
}

} // namespace cafex
