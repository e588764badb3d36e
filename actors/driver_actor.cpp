#include "actors/driver_actor.hpp"

#include <spdlog/spdlog.h>

#include "actors/driver_dataflow.hpp"
#include "runtime/error.hpp"
#include "runtime/failure_cause.hpp"

namespace cafex {

std::string who(const driver_state& st, int rank) {
  std::string node = rank < static_cast<int>(st.node_ids.size()) ? st.node_ids[rank] : "?";
  return "rank " + std::to_string(rank) + " on node " + node;
}

namespace {

using state_ptr = driver_ptr;

/// Adds rank and node to an error a worker returned, keeping its code.
caf::error attribute(const driver_state& st, int rank, const std::string& what,
                     const caf::error& err) {
  if (err == caf::sec::request_timeout)
    return make_error(errc::timeout, who(st, rank) + " did not answer " + what
                                       + " in time; the method may be stuck, or raise its "
                                         "timeout");
  if (code_of(err) != errc::none)
    return err; // workers already name their rank
  return make_error(errc::worker_lost, who(st, rank) + " failed " + what + ": "
                                         + caf::to_string(err));
}

void finish_rpc(state_ptr self, uint64_t id, caf::error err) {
  auto i = self->state.rpcs.find(id);
  if (i == self->state.rpcs.end())
    return;
  auto p = i->second;
  self->state.rpcs.erase(i);
  p->done = true;
  if (err) {
    p->rp.deliver(std::move(err));
    return;
  }
  if (p->unique_reply_rank >= 0)
    p->rp.deliver(std::vector<std::string>{p->results[p->unique_reply_rank]});
  else
    p->rp.deliver(std::move(p->results));
}

/// A worker is gone: fail everything that waits for it, now.
void on_worker_down(state_ptr self, int rank, const failure_cause& cause,
                    const std::string& link_reason) {
  auto& st = self->state;
  if (!st.dead[rank].empty())
    return;
  st.probing[rank] = false;
  auto why = describe_cause(cause, st.opts.liveness.connection_timeout, st.node_ids[rank]);
  if (cause.what == failure_cause::kind::unknown)
    why += " (" + link_reason + ")";
  st.dead[rank] = why;
  st.health[rank] = health_state_of(cause);
  spdlog::error("{} is gone: {}", who(st, rank), why);
  const bool restart = static_cast<bool>(st.opts.on_recover);
  auto lost = make_error(errc::worker_lost,
                         who(st, rank) + " is gone: " + why + "; "
                           + (restart ? "the executor replaces it (--on-worker-failure "
                                        "restart): resubmit this step's requests, re-prefilled, "
                                        "once state() is ready again"
                                      : advice_for(cause)));
  std::vector<uint64_t> ids;
  for (auto& [id, p] : st.rpcs)
    if (p->waiting.count(rank))
      ids.push_back(id);
  for (auto id : ids)
    finish_rpc(self, id, lost);
  // Every step involves every rank.
  fail_all_steps(self, lost);
  if (restart) {
    st.health[rank] = "restarting";
    begin_recovery(self, rank, who(st, rank) + " is gone: " + why);
  }
}

failure_cause unreachable() {
  failure_cause c;
  c.what = failure_cause::kind::unreachable;
  return c;
}

/// A worker's link dropped: ask the agent that reaped it how it ended (a few ms for a
/// killed process), then fail its calls with that cause. Bounded by cause_timeout.
void on_link_down(state_ptr self, int rank, const std::string& reason) {
  auto& st = self->state;
  if (!st.dead[rank].empty() || st.probing[rank])
    return;
  auto agent = rank < static_cast<int>(st.agents.size()) ? st.agents[rank] : node_agent_actor{};
  if (!agent) {
    on_worker_down(self, rank, failure_cause{}, reason);
    return;
  }
  if (st.lost_agents.count(agent.address()) > 0) {
    // Its agent is gone too (killed, or the node cut off): nobody can say more.
    on_worker_down(self, rank, unreachable(), reason);
    return;
  }
  st.probing[rank] = true;
  auto worker_id = st.workers[rank].address();
  self->request(agent, st.opts.liveness.cause_timeout, cause_atom::value, int32_t{rank},
                worker_key(st.workers[rank]))
    .then(
      [self, worker_id, reason](std::string& answer) {
        // Ranks may have been reordered meanwhile: find the worker again.
        auto& st = self->state;
        for (size_t r = 0; r < st.workers.size(); ++r)
          if (st.workers[r].address() == worker_id)
            on_worker_down(self, static_cast<int>(r), parse_agent_cause(answer), reason);
      },
      [self, worker_id, reason](caf::error&) {
        auto& st = self->state;
        for (size_t r = 0; r < st.workers.size(); ++r)
          if (st.workers[r].address() == worker_id)
            on_worker_down(self, static_cast<int>(r), unreachable(), reason);
      });
}

/// A node agent's link dropped: ranks waiting for its answer get "unreachable" now
/// instead of after cause_timeout, and later losses on that node skip the question.
void on_agent_down(state_ptr self, const caf::actor_addr& agent, const std::string& reason) {
  auto& st = self->state;
  st.lost_agents.insert(agent);
  for (size_t r = 0; r < st.agents.size() && r < st.workers.size(); ++r)
    if (st.agents[r].address() == agent && st.probing[r])
      on_worker_down(self, static_cast<int>(r), unreachable(), reason);
}

} // namespace

void begin_recovery(driver_ptr self, int rank, const std::string& reason) {
  auto& st = self->state;
  if (!st.opts.on_recover)
    return;
  if (!st.recovering)
    st.recovery_reason = reason;
  st.recovering = true;
  // This generation's dataflow is gone: nothing pending survives it, and every live worker
  // drops its channels (a stage blocked on the lost rank fails and lets go of its runner).
  fail_all_steps(self, make_error(errc::worker_lost, reason + "; the executor is recovering: "
                                                     "resubmit once state() is ready again"));
  ++st.generation;
  st.dag = driver_state::dag_state::none;
  st.done.reset(st.window.next_seq());
  st.shm.reset();
  for (size_t r = 0; r < st.workers.size(); ++r)
    if (st.dead[r].empty())
      self->request(st.workers[r], std::chrono::seconds(10), teardown_atom::value)
        .then([](bool) {}, [](caf::error&) {});
  spdlog::warn("recovering: {}", reason);
  st.opts.on_recover(rank, reason);
}

driver_actor::behavior_type driver_impl(state_ptr self, driver_options opts) {
  self->state.opts = opts;
  self->state.window = step_window(opts.max_concurrent_batches);
  if (!opts.kv_connector.empty())
    self->state.kv = std::make_unique<kv_output_aggregator>(1);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (size_t r = 0; r < st.workers.size(); ++r)
      if (st.workers[r].address() == dm.source)
        on_link_down(self, static_cast<int>(r), caf::to_string(dm.reason));
    for (const auto& a : st.agents)
      if (a.address() == dm.source) {
        on_agent_down(self, dm.source, caf::to_string(dm.reason));
        break;
      }
  });
  return {
    [self](workers_atom, std::vector<worker_actor>& ws, std::vector<std::string>& nodes,
           int32_t tp, int32_t pp) -> caf::result<bool> {
      auto& st = self->state;
      if (ws.size() != nodes.size() || ws.empty() || tp < 1 || pp < 1
          || static_cast<int>(ws.size()) != tp * pp)
        return make_error(errc::invalid_argument, "driver got an inconsistent worker set");
      st.workers = std::move(ws);
      st.node_ids = std::move(nodes);
      st.dead.assign(st.workers.size(), "");
      st.health.assign(st.workers.size(), "healthy");
      st.probing.assign(st.workers.size(), false);
      st.tp = tp;
      st.pp = pp;
      for (auto& w : st.workers)
        self->monitor(w);
      if (st.kv)
        st.kv = std::make_unique<kv_output_aggregator>(tp * pp);
      return true;
    },
    [self](agents_atom, std::vector<node_agent_actor>& agents) -> caf::result<bool> {
      if (agents.size() != self->state.workers.size())
        return make_error(errc::invalid_argument, "driver got one agent per rank too few");
      for (const auto& a : agents)
        self->monitor(a);  // a lost agent is never asked how its workers ended
      self->state.agents = std::move(agents);
      return true;
    },
    [self](rerank_atom, const std::vector<int32_t>& order) -> caf::result<bool> {
      auto& st = self->state;
      if (order.size() != st.workers.size())
        return make_error(errc::invalid_argument, "rerank order has the wrong size");
      std::vector<worker_actor> ws(order.size());
      std::vector<std::string> nodes(order.size()), dead(order.size()), health(order.size());
      std::vector<node_agent_actor> agents(st.agents.empty() ? 0 : order.size());
      std::vector<bool> seen(order.size(), false), probing(order.size(), false);
      for (size_t adjusted = 0; adjusted < order.size(); ++adjusted) {
        auto created = order[adjusted];
        if (created < 0 || created >= static_cast<int>(order.size()) || seen[created])
          return make_error(errc::invalid_argument, "rerank order is not a permutation");
        seen[created] = true;
        ws[adjusted] = st.workers[created];
        nodes[adjusted] = st.node_ids[created];
        dead[adjusted] = st.dead[created];
        health[adjusted] = st.health[created];
        probing[adjusted] = st.probing[created];
        if (!agents.empty())
          agents[adjusted] = st.agents[created];
      }
      st.workers = std::move(ws);
      st.node_ids = std::move(nodes);
      st.dead = std::move(dead);
      st.health = std::move(health);
      st.probing = std::move(probing);
      st.agents = std::move(agents);
      return true;
    },
    [self](rpc_atom, const std::string& method, const std::string& args,
           const rpc_options& ro) -> caf::result<std::vector<std::string>> {
      auto& st = self->state;
      int n = static_cast<int>(st.workers.size());
      if (n == 0)
        return make_error(errc::not_ready, "collective_rpc before the workers exist");
      if (ro.unique_reply_rank >= n
          || (ro.unique_reply_rank >= 0 && !ro.ranks.empty()))
        return make_error(errc::invalid_argument,
                          "unique_reply_rank " + std::to_string(ro.unique_reply_rank)
                            + " is out of range for " + std::to_string(n) + " workers");
      if (st.recovering && !ro.recovery)
        return make_error(errc::not_ready, "the executor is recovering (" + st.recovery_reason
                                             + "); call again once state() is ready");
      std::vector<int> targets;
      for (auto r : ro.ranks) {
        if (r < 0 || r >= n)
          return make_error(errc::invalid_argument, "rank " + std::to_string(r)
                                                      + " is out of range for "
                                                      + std::to_string(n) + " workers");
        targets.push_back(r);
      }
      if (targets.empty())
        for (int r = 0; r < n; ++r)
          targets.push_back(r);
      for (int r : targets)
        if (!st.dead[r].empty() || st.probing[r])
          return make_error(errc::worker_lost,
                            who(st, r) + " is gone: "
                              + (st.probing[r] ? "its link dropped" : st.dead[r])
                              + (st.opts.on_recover
                                   ? "; the executor is replacing it"
                                   : "; shut the executor down and start it again"));
      auto timeout = ro.timeout_ms > 0 ? std::chrono::milliseconds(ro.timeout_ms)
                                       : st.opts.default_rpc_timeout;
      auto id = st.next_rpc++;
      auto p = std::make_shared<pending_rpc>();
      p->what = "method '" + method + "'";
      p->results.resize(targets.size());
      p->unique_reply_rank = ro.unique_reply_rank;
      p->rp = self->make_response_promise<std::vector<std::string>>();
      for (int r : targets)
        p->waiting.insert(r);
      st.rpcs.emplace(id, p);
      for (size_t slot = 0; slot < targets.size(); ++slot) {
        int r = targets[slot];
        self->request(st.workers[r], timeout, call_atom::value, method, args)
          .then(
            [self, id, p, r, slot](std::string& result) {
              if (p->done)
                return;
              p->results[slot] = std::move(result);
              p->waiting.erase(r);
              if (p->waiting.empty())
                finish_rpc(self, id, caf::none);
            },
            [self, id, p, r](caf::error& err) {
              if (!p->done)
                finish_rpc(self, id, attribute(self->state, r, p->what, err));
            });
      }
      return p->rp;
    },
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
    [self](deadline_atom, uint64_t seq) { on_step_deadline(self, seq); },
    [self](dag_atom, std::string& url, std::vector<std::string>& ips, bool use_shm) -> bool {
      self->state.store_url = std::move(url);
      self->state.node_ips = std::move(ips);
      self->state.use_shm = use_shm;
      return true;
    },
    [self](teardown_atom) -> caf::result<bool> { return teardown_dataflow(self); },
    [self](stats_atom) -> std::string { return dataflow_stats(self->state); },
    [self](health_atom) -> std::vector<worker_health> {
      auto& st = self->state;
      std::vector<worker_health> out;
      for (size_t r = 0; r < st.workers.size(); ++r) {
        worker_health h{static_cast<int32_t>(r), st.node_ids[r],
                        st.probing[r] ? "unresponsive" : st.health[r],
                        st.probing[r] ? "link dropped" : st.dead[r]};
        // While recovering, the ranks that lived rebuild their communicators too.
        if (st.recovering && h.state == "healthy") {
          h.state = "rebuilding";
          h.detail = "rebuilding communicators: " + st.recovery_reason;
        }
        out.push_back(std::move(h));
      }
      return out;
    },
    [self](kill_atom, int32_t rank) -> caf::result<std::string> {
      auto& st = self->state;
      if (rank < 0 || rank >= static_cast<int32_t>(st.workers.size()))
        return make_error(errc::invalid_argument, "kill: no rank " + std::to_string(rank));
      auto agent = rank < static_cast<int32_t>(st.agents.size()) ? st.agents[rank]
                                                                 : node_agent_actor{};
      if (!agent)
        return std::string("no agent");
      if (st.lost_agents.count(agent.address()) > 0)
        return std::string("unreachable: its node agent is lost");
      auto rp = self->make_response_promise<std::string>();
      self->request(agent, st.opts.liveness.cause_timeout + std::chrono::seconds(5),
                    kill_atom::value, worker_key(st.workers[rank]))
        .then([rp](std::string& how) mutable { rp.deliver(std::move(how)); },
              // Its node is unreachable: nothing to kill from here.
              [rp](caf::error& e) mutable { rp.deliver("unreachable: " + caf::to_string(e)); });
      return rp;
    },
    [self](replace_atom, int32_t rank, worker_actor& w, std::string& node, std::string& ip,
           node_agent_actor& agent) -> caf::result<bool> {
      auto& st = self->state;
      if (rank < 0 || rank >= static_cast<int32_t>(st.workers.size()) || !w)
        return make_error(errc::invalid_argument, "replace: no rank " + std::to_string(rank));
      self->demonitor(st.workers[rank].address());
      if (node != st.node_ids[rank] && st.use_shm) {
        // Moved to another machine: the shared-memory path no longer reaches every rank.
        spdlog::warn("{} moved to node {}: the dataflow leaves shared memory for {}",
                     who(st, rank), node, st.opts.channel);
        st.use_shm = false;
      }
      if (rank < static_cast<int32_t>(st.node_ips.size()))
        st.node_ips[rank] = ip;
      st.workers[rank] = std::move(w);
      st.node_ids[rank] = std::move(node);
      if (rank < static_cast<int32_t>(st.agents.size())) {
        st.agents[rank] = std::move(agent);
        self->monitor(st.agents[rank]);
      }
      st.dead[rank].clear();
      st.probing[rank] = false;
      // Alive again: reported "rebuilding" until the recovery ends (health handler).
      st.health[rank] = "healthy";
      self->monitor(st.workers[rank]);
      spdlog::info("{} replaced", who(st, rank));
      return true;
    },
    [self](recovered_atom, bool ok, const std::string& why) -> bool {
      auto& st = self->state;
      st.recovering = false;
      for (size_t r = 0; r < st.workers.size(); ++r) {
        if (ok && st.dead[r].empty() && !st.probing[r]) {
          st.health[r] = "healthy";
        } else if (!ok) {
          // Given up: the communicators are not rebuilt, so no rank can run steps.
          st.health[r] = "dead";
          if (st.dead[r].empty())
            st.dead[r] = "recovery failed: " + why;
        }
      }
      if (ok)
        spdlog::info("recovered from: {}", st.recovery_reason);
      else
        spdlog::error("recovery from '{}' failed: {}", st.recovery_reason, why);
      st.recovery_reason.clear();
      return true;
    },
    [self](stop_atom) -> bool {
      auto& st = self->state;
      auto stopped = make_error(errc::not_ready, "the executor is shutting down");
      std::vector<uint64_t> ids;
      for (auto& kv : st.rpcs)
        ids.push_back(kv.first);
      for (auto id : ids)
        finish_rpc(self, id, stopped);
      fail_all_steps(self, stopped);
      st.shm.reset();
      for (auto& w : st.workers) {
        self->demonitor(w.address());
        self->send_exit(w, caf::exit_reason::user_shutdown);
      }
      self->quit();
      return true;
    },
  };
}

} // namespace cafex
