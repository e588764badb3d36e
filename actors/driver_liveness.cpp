#include "actors/driver_liveness.hpp"

#include <spdlog/spdlog.h>

#include "actors/driver_dataflow.hpp"
#include "actors/driver_rpc.hpp"
#include "runtime/error.hpp"

namespace cafex {

namespace {

failure_cause unreachable() {
  failure_cause c;
  c.what = failure_cause::kind::unreachable;
  return c;
}

/// A worker is gone: fail everything that waits for it, now.
void on_worker_down(driver_ptr self, int rank, failure_cause cause, const caf::error& link) {
  auto& st = self->state;
  auto& slot = st.ranks[rank];
  if (slot.gone)
    return;
  cause.link_unreachable = link == caf::exit_reason::remote_link_unreachable;
  auto why = describe_cause(cause, st.opts.liveness.connection_timeout, slot.node_id);
  if (cause.what == failure_cause::kind::unknown)
    why += " (" + caf::to_string(link) + ")";
  slot.probing = false;
  slot.gone = true;
  slot.cause = cause;
  slot.why = why;
  slot.state = health_state_of(cause);
  spdlog::error("{} is gone: {}", who(st, rank), why);
  const bool restart = restarts(st);
  std::string what_next = advice_for(cause);
  if (restart)
    what_next = "the executor replaces it (--on-worker-failure restart): resubmit this step's "
                "requests, re-prefilled, once state() is ready again";
  else if (st.opts.on_recover)
    what_next = "start-up fails: --on-worker-failure restart replaces workers only once the "
                "executor is ready; "
                + what_next;
  auto lost = make_error(errc::worker_lost,
                         who(st, rank) + " is gone: " + why + "; " + what_next);
  fail_rpcs_waiting_for(self, rank, lost);
  // Every step involves every rank.
  fail_all_steps(self, lost);
  if (restart) {
    slot.state = health_state::restarting;
    begin_recovery(self, rank, who(st, rank) + " is gone: " + why);
  }
}

/// The agent's answer (or its failure) about the worker at `worker_id`, wherever a rerank
/// has put it meanwhile.
void on_cause(driver_ptr self, const caf::actor_addr& worker_id, const failure_cause& cause,
              const caf::error& link) {
  auto r = rank_of(self->state, worker_id);
  if (r >= 0)
    on_worker_down(self, r, cause, link);
}

/// A worker's link dropped: ask the agent that reaped it how it ended (a few ms for a
/// killed process), then fail its calls with that cause. Bounded by cause_timeout.
void on_link_down(driver_ptr self, int rank, const caf::error& link) {
  auto& st = self->state;
  auto& slot = st.ranks[rank];
  if (slot.gone || slot.probing)
    return;
  if (!slot.agent) {
    on_worker_down(self, rank, failure_cause{}, link);
    return;
  }
  if (st.lost_agents.count(slot.agent.address()) > 0) {
    // Its agent is gone too (killed, or the node cut off): nobody can say more.
    on_worker_down(self, rank, unreachable(), link);
    return;
  }
  slot.probing = true;
  auto worker_id = slot.worker.address();
  self
    ->request(slot.agent, st.opts.liveness.cause_timeout, cause_atom::value, int32_t{rank},
              worker_key(slot.worker))
    .then([self, worker_id, link](failure_cause& c) { on_cause(self, worker_id, c, link); },
          [self, worker_id, link](caf::error&) {
            on_cause(self, worker_id, unreachable(), link);
          });
}

/// A node agent's link dropped (killed, stopped, cut off, shut down): the node is lost.
/// Its workers are lost with it, now: they exit once they lose their agent (a stopped
/// agent's after their own connection timeout), and nobody is left there to start, stop
/// or report on them. Ranks waiting for its answer get "unreachable" now instead of after
/// cause_timeout, and later losses on that node skip the question.
void on_agent_down(driver_ptr self, const caf::actor_addr& agent, const caf::error& link) {
  auto& st = self->state;
  st.lost_agents.insert(agent);
  for (size_t r = 0; r < st.ranks.size(); ++r)
    if (st.ranks[r].agent.address() == agent)
      on_worker_down(self, static_cast<int>(r), unreachable(), link);
}

} // namespace

void on_down(driver_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (size_t r = 0; r < st.ranks.size(); ++r)
    if (st.ranks[r].worker.address() == dm.source)
      on_link_down(self, static_cast<int>(r), dm.reason);
  for (const auto& slot : st.ranks)
    if (slot.agent && slot.agent.address() == dm.source) {
      on_agent_down(self, dm.source, dm.reason);
      break;
    }
}

void begin_recovery(driver_ptr self, int rank, const std::string& reason) {
  auto& st = self->state;
  if (!restarts(st))
    return;
  if (!st.recovering)
    st.recovery_reason = reason;
  st.recovering = true;
  st.rebuilding = false; // the recovery rebuilds every communicator itself
  // This generation's dataflow is gone: nothing pending survives it, and every live worker
  // drops its channels and its TP communicator (a stage blocked on the lost rank, or in a
  // collective with a peer whose input died with it, fails and lets go of its runner).
  fail_all_steps(self,
                 make_error(errc::worker_lost, reason
                                                 + "; the executor is recovering: "
                                                   "resubmit once state() is ready again"));
  ++st.generation;
  st.dag = driver_state::dag_state::none;
  st.done.reset(st.window.next_seq());
  retire_shm(st, make_error(errc::worker_lost, reason));
  for (const auto& slot : st.ranks)
    if (!slot.gone)
      self
        ->request(slot.worker, defaults::worker_teardown_timeout, teardown_atom::value,
                  recover_atom::value)
        .then([](bool) {}, [](caf::error&) {});
  spdlog::warn("recovering: {}", reason);
  st.opts.on_recover(rank, reason);
}

caf::result<std::string> kill_rank(driver_ptr self, int32_t rank) {
  auto& st = self->state;
  if (rank < 0 || rank >= static_cast<int32_t>(st.ranks.size()))
    return make_error(errc::invalid_argument, "kill: no rank " + std::to_string(rank));
  const auto& slot = st.ranks[rank];
  if (!slot.agent)
    return std::string("no agent");
  if (st.lost_agents.count(slot.agent.address()) > 0)
    return std::string("unreachable: its node agent is lost");
  auto rp = self->make_response_promise<std::string>();
  auto timeout = st.opts.liveness.connection_timeout;
  auto node = slot.node_id;
  self
    ->request(slot.agent, st.opts.liveness.cause_timeout + defaults::kill_answer_margin,
              kill_atom::value, worker_key(slot.worker))
    .then(
      [rp, timeout, node](failure_cause& how) mutable {
        rp.deliver(how.what == failure_cause::kind::unknown
                     ? std::string("gone")
                     : describe_cause(how, timeout, node));
      },
      // Its node is unreachable: nothing to kill from here.
      [rp](caf::error& e) mutable { rp.deliver("unreachable: " + caf::to_string(e)); });
  return rp;
}

caf::result<bool> replace_rank(driver_ptr self, int32_t rank, worker_actor& w,
                               std::string& node, std::string& ip, node_agent_actor& agent) {
  auto& st = self->state;
  if (rank < 0 || rank >= static_cast<int32_t>(st.ranks.size()) || !w)
    return make_error(errc::invalid_argument, "replace: no rank " + std::to_string(rank));
  auto& slot = st.ranks[rank];
  self->demonitor(slot.worker.address());
  if (node != slot.node_id && st.use_shm) {
    // Moved to another machine: the shared-memory path no longer reaches every rank.
    spdlog::warn("{} moved to node {}: the dataflow leaves shared memory for {}",
                 who(st, rank), node, st.opts.channel);
    st.use_shm = false;
  }
  if (!slot.node_ip.empty())
    slot.node_ip = ip;
  slot.worker = std::move(w);
  slot.node_id = std::move(node);
  slot.agent = std::move(agent);
  if (slot.agent)
    self->monitor(slot.agent);
  slot.gone = false;
  slot.probing = false;
  slot.cause = failure_cause{failure_cause::kind::none};
  slot.why.clear();
  // Alive again: reported "rebuilding" until the recovery ends (the health report).
  slot.state = health_state::healthy;
  self->monitor(slot.worker);
  spdlog::info("{} replaced", who(st, rank));
  return true;
}

bool end_recovery(driver_ptr self, bool ok, const std::string& why) {
  auto& st = self->state;
  st.recovering = false;
  for (auto& slot : st.ranks) {
    if (ok && !slot.gone && !slot.probing) {
      slot.state = health_state::healthy;
    } else if (!ok) {
      // Given up: the communicators are not rebuilt, so no rank can run steps.
      slot.state = health_state::dead;
      if (!slot.gone) {
        slot.gone = true;
        slot.cause = failure_cause{}; // alive, but nobody knows what broke its rebuild
        slot.why = "recovery failed: " + why;
      }
    }
  }
  if (ok)
    spdlog::info("recovered from: {}", st.recovery_reason);
  else
    spdlog::error("recovery from '{}' failed: {}", st.recovery_reason, why);
  st.recovery_reason.clear();
  return true;
}

} // namespace cafex
