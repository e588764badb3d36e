#include "actors/driver_actor.hpp"

#include <spdlog/spdlog.h>

#include "actors/driver_dataflow.hpp"
#include "actors/driver_liveness.hpp"
#include "actors/driver_rpc.hpp"
#include "runtime/error.hpp"

namespace cafex {

std::string who(const driver_state& st, int rank) {
  std::string node = rank >= 0 && rank < static_cast<int>(st.ranks.size())
                       ? st.ranks[rank].node_id
                       : "?";
  return "rank " + std::to_string(rank) + " on node " + node;
}

int rank_of(const driver_state& st, const caf::actor_addr& addr) {
  for (size_t r = 0; r < st.ranks.size(); ++r)
    if (st.ranks[r].worker.address() == addr)
      return static_cast<int>(r);
  return -1;
}

caf::error take_workers(driver_state& st, std::vector<worker_actor> ws,
                        std::vector<std::string> nodes, int tp, int pp) {
  if (ws.size() != nodes.size() || ws.empty() || tp < 1 || pp < 1
      || static_cast<int>(ws.size()) != tp * pp)
    return make_error(errc::invalid_argument, "driver got an inconsistent worker set");
  st.ranks.assign(ws.size(), rank_slot{});
  for (size_t r = 0; r < ws.size(); ++r) {
    st.ranks[r].worker = std::move(ws[r]);
    st.ranks[r].node_id = std::move(nodes[r]);
  }
  st.tp = tp;
  st.pp = pp;
  if (st.kv)
    st.kv = std::make_unique<kv_output_aggregator>(tp * pp);
  return caf::none;
}

caf::error apply_rerank(driver_state& st, const std::vector<int32_t>& order) {
  if (order.size() != st.ranks.size())
    return make_error(errc::invalid_argument, "rerank order has the wrong size");
  std::vector<bool> seen(order.size(), false);
  for (auto created : order) {
    if (created < 0 || created >= static_cast<int>(order.size()) || seen[created])
      return make_error(errc::invalid_argument, "rerank order is not a permutation");
    seen[created] = true;
  }
  std::vector<rank_slot> adjusted;
  adjusted.reserve(order.size());
  for (auto created : order)
    adjusted.push_back(std::move(st.ranks[created]));
  st.ranks = std::move(adjusted);
  return caf::none;
}

std::vector<worker_health> health_report(const driver_state& st) {
  std::vector<worker_health> out;
  for (size_t r = 0; r < st.ranks.size(); ++r) {
    const auto& slot = st.ranks[r];
    worker_health h;
    h.rank = static_cast<int32_t>(r);
    h.node_id = slot.node_id;
    h.state = slot.state;
    h.cause = slot.cause;
    h.detail = slot.why;
    if (slot.probing) {
      h.state = health_state::unresponsive;
      h.cause = failure_cause{failure_cause::kind::link_dropped};
      h.detail = describe_cause(h.cause, st.opts.liveness.connection_timeout, slot.node_id);
    } else if (st.recovering && h.state == health_state::healthy) {
      // While recovering, the ranks that lived rebuild their communicators too.
      h.state = health_state::rebuilding;
      h.detail = "rebuilding communicators: " + st.recovery_reason;
    }
    out.push_back(std::move(h));
  }
  return out;
}

namespace {

caf::result<bool> on_workers(driver_ptr self, std::vector<worker_actor>& ws,
                             std::vector<std::string>& nodes, int32_t tp, int32_t pp) {
  if (auto err = take_workers(self->state, std::move(ws), std::move(nodes), tp, pp))
    return err;
  for (auto& slot : self->state.ranks)
    self->monitor(slot.worker);
  return true;
}

caf::result<bool> on_agents(driver_ptr self, std::vector<node_agent_actor>& agents) {
  auto& st = self->state;
  if (agents.size() != st.ranks.size())
    return make_error(errc::invalid_argument, "driver got one agent per rank too few");
  for (size_t r = 0; r < agents.size(); ++r) {
    st.ranks[r].agent = std::move(agents[r]);
    self->monitor(st.ranks[r].agent); // a lost agent is never asked how its workers ended
  }
  return true;
}

caf::result<bool> on_rerank(driver_ptr self, const std::vector<int32_t>& order) {
  if (auto err = apply_rerank(self->state, order))
    return err;
  return true;
}

bool on_dataflow_config(driver_ptr self, std::string& url, std::vector<std::string>& ips,
                        bool use_shm) {
  auto& st = self->state;
  st.store_url = std::move(url);
  for (size_t r = 0; r < st.ranks.size(); ++r)
    st.ranks[r].node_ip = r < ips.size() ? std::move(ips[r]) : std::string{};
  st.use_shm = use_shm;
  // The last phase of start-up: from here on, the restart policy replaces lost workers.
  st.started = true;
  return true;
}

bool on_stop(driver_ptr self) {
  auto& st = self->state;
  auto stopped = make_error(errc::not_ready, "the executor is shutting down");
  fail_all_rpcs(self, stopped);
  fail_all_steps(self, stopped);
  retire_shm(st, stopped);
  for (auto& slot : st.ranks) {
    self->demonitor(slot.worker.address());
    self->send_exit(slot.worker, caf::exit_reason::user_shutdown);
  }
  self->quit();
  return true;
}

} // namespace

driver_actor::behavior_type driver_impl(driver_ptr self, driver_options opts) {
  self->state.opts = std::move(opts);
  const auto& o = self->state.opts;
  self->state.window = step_window(o.max_concurrent_batches);
  if (!o.kv_connector.empty())
    self->state.kv = std::make_unique<kv_output_aggregator>(1);
  self->set_down_handler([self](caf::down_msg& dm) { on_down(self, dm); });
  // Each message forwards to one named handler: the lifecycle above, collective_rpc in
  // driver_rpc, steps in driver_dataflow, losses and recovery in driver_liveness.
  return {
    [self](workers_atom, std::vector<worker_actor>& ws, std::vector<std::string>& nodes,
           int32_t tp, int32_t pp) { return on_workers(self, ws, nodes, tp, pp); },
    [self](agents_atom, std::vector<node_agent_actor>& agents) {
      return on_agents(self, agents);
    },
    [self](rerank_atom, const std::vector<int32_t>& order) { return on_rerank(self, order); },
    [self](rpc_atom, const std::string& method, const std::string& args,
           const rpc_options& ro) { return start_rpc(self, method, args, ro); },
    [self](execute_atom, scheduler_output& step,
           bool fail_fast) -> caf::result<model_runner_output> {
      return submit_step(self, std::move(step), fail_fast);
    },
    [self](result_atom, uint64_t seq, int32_t rank, model_runner_output& out) {
      on_step_result(self, seq, rank, out);
    },
    [self](progress_atom, uint64_t seq, int32_t rank) { on_step_progress(self, seq, rank); },
    [self](stepfail_atom, uint64_t seq, int32_t rank, caf::error& err) {
      on_step_failed(self, seq, rank, err);
    },
    [self](lanefree_atom) { on_lane_free(self); },
    [self](deadline_atom, uint64_t seq) { on_step_deadline(self, seq); },
    [self](dag_atom, std::string& url, std::vector<std::string>& ips, bool use_shm) {
      return on_dataflow_config(self, url, ips, use_shm);
    },
    [self](teardown_atom) -> caf::result<bool> { return teardown_dataflow(self, false); },
    [self](teardown_atom, recover_atom) -> caf::result<bool> {
      return teardown_dataflow(self, true);
    },
    [self](rebuilt_atom, const std::string& why) { return end_rebuild(self, why); },
    [self](rebuilt_atom, uint64_t number) { on_rebuild_deadline(self, number); },
    [self](stats_atom) -> std::string { return dataflow_stats(self->state); },
    [self](health_atom) -> std::vector<worker_health> { return health_report(self->state); },
    [self](kill_atom, int32_t rank) { return kill_rank(self, rank); },
    [self](replace_atom, int32_t rank, worker_actor& w, std::string& node, std::string& ip,
           node_agent_actor& agent) { return replace_rank(self, rank, w, node, ip, agent); },
    [self](recovered_atom, bool ok, const std::string& why) {
      return end_recovery(self, ok, why);
    },
    [self](stop_atom) { return on_stop(self); },
  };
}

} // namespace cafex
