#include "actors/driver_dataflow.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/deadline_timer.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "transport/shm_messages.hpp"

namespace cafex {

namespace {

int output_rank(const driver_state& st) {
  // The seed returns refs[0]: worker 0 of the last pipeline stage.
  return (st.pp - 1) * st.tp;
}

/// Answers every step whose predecessors were all answered, in order.
void release_in_order(driver_ptr self) {
  for (auto& [seq, p] : self->state.done.pop_ready()) {
    if (p->error)
      p->rp.deliver(p->error);
    else
      p->rp.deliver(std::move(p->output));
  }
}

void try_dispatch(driver_ptr self);

void finish(driver_ptr self, uint64_t seq, caf::error err) {
  auto& st = self->state;
  auto i = st.in_flight.find(seq);
  if (i == st.in_flight.end())
    return;
  auto p = i->second;
  st.in_flight.erase(i);
  st.deadlines.remove(seq);
  p->finished = true;
  if (p->via && p->via == st.shm.get())
    st.shm->lane().release_for_actor();
  if (err) {
    p->error = std::move(err);
    ++st.steps_failed;
  } else {
    ++st.steps_ok;
    if (st.kv)
      p->output = st.kv->aggregate(std::move(p->outputs),
                                   static_cast<size_t>(output_rank(st)));
  }
  st.window.complete();
  st.done.put(seq, p);
  release_in_order(self);
  try_dispatch(self);
}

void try_dispatch(driver_ptr self) {
  auto& st = self->state;
  while (st.dag == driver_state::dag_state::ready && st.window.can_dispatch()
         && !st.queued.empty()) {
    // A caller's direct step owns the rings: the lane's lanefree_atom resumes this.
    if (st.shm && !st.shm->lane().claim_for_actor())
      return;
    auto p = st.queued.front();
    st.queued.pop_front();
    auto seq = st.window.dispatch();
    for (int r = 0; r < st.tp * st.pp; ++r)
      p->owing.insert(r);
    if (st.kv)
      p->outputs.resize(static_cast<size_t>(st.tp) * static_cast<size_t>(st.pp));
    st.in_flight.emplace(seq, p);
    arm_deadline_timer(self,
                       st.deadlines.add(seq, self->clock().now() + st.opts.step_timeout));
    if (st.shm) {
      p->via = st.shm.get();
      if (auto err = st.shm->dispatch(seq, p->step))
        finish(self, seq, err);
      continue;
    }
    for (int r = 0; r < st.tp; ++r)
      self->send(st.ranks[r].worker, execute_atom::value, seq, p->step);
  }
}

void compile(driver_ptr self) {
  auto& st = self->state;
  st.dag = driver_state::dag_state::compiling;
  auto gen = ++st.generation;
  auto world = st.tp * st.pp;
  auto remaining = std::make_shared<int>(world);
  auto failed = std::make_shared<bool>(false);
  auto deadline = st.opts.channel_timeout + defaults::compile_slack;
  retire_shm(st, make_error(errc::not_ready, "the dataflow is being compiled again"));
  if (st.use_shm) {
    auto path = driver_shm_path::create(shm_prefix_for(gen), st.tp, st.pp,
                                        caf::actor_cast<step_sink_actor>(self), {},
                                        st.opts.step_timeout, st.lane_counts);
    if (!path) {
      st.dag = driver_state::dag_state::none;
      fail_all_steps(self, make_error(errc::transport_failed,
                                      "cannot set up the shared-memory path: "
                                        + describe(path.error())));
      return;
    }
    st.shm = std::move(*path);
  }
  spdlog::debug("compiling dataflow generation {}: {} stage(s) x {} rank(s), channel {}", gen,
                st.pp, st.tp, st.opts.channel);
  for (int r = 0; r < world; ++r) {
    dag_config cfg;
    cfg.generation = gen;
    cfg.stage = r / st.tp;
    cfg.num_stages = st.pp;
    cfg.channel = st.opts.channel;
    cfg.store_url = st.store_url;
    cfg.bind_host = st.ranks[r].node_ip.empty() ? "127.0.0.1" : st.ranks[r].node_ip;
    cfg.timeout_ms = st.opts.channel_timeout.count();
    cfg.report_all = !st.opts.kv_connector.empty();
    cfg.kv_connector = st.opts.kv_connector;
    cfg.tp = st.tp;
    cfg.spin_us = st.opts.hot_spin.count();
    if (st.shm)
      cfg.shm_prefix = st.shm->prefix();
    if (cfg.stage < st.pp - 1)
      cfg.next = caf::actor_cast<caf::strong_actor_ptr>(st.ranks[r + st.tp].worker);
    cfg.sink = caf::actor_cast<caf::strong_actor_ptr>(self);
    self->request(st.ranks[r].worker, deadline, dag_atom::value, cfg)
      .then(
        [self, gen, remaining, failed, r](std::string& transport) {
          auto& st = self->state;
          if (*failed || st.generation != gen)
            return;
          st.ranks[r].tp_transport = std::move(transport);
          if (--*remaining == 0) {
            // Every rank has mapped its rings (workers open them before answering).
            st.dag = driver_state::dag_state::ready;
            if (st.shm) {
              st.shm->unlink_names();
              // Blocking callers may now run steps on the direct lane: only without a
              // KV connector, whose outputs the driver gathers from every rank.
              if (st.opts.lane && !st.kv) {
                std::vector<std::string> names;
                names.reserve(st.ranks.size());
                for (int k = 0; k < static_cast<int>(st.ranks.size()); ++k)
                  names.push_back(who(st, k));
                st.shm->lane().open(std::move(names));
                st.opts.lane->publish(st.shm);
              }
            }
            st.done.reset(st.window.next_seq());
            try_dispatch(self);
          }
        },
        [self, gen, failed, r](caf::error& err) {
          auto& st = self->state;
          if (*failed || st.generation != gen)
            return;
          *failed = true;
          st.dag = driver_state::dag_state::none;
          retire_shm(st, make_error(errc::transport_failed, "compiling the dataflow failed"));
          auto e = make_error(code_of(err) == errc::none ? errc::transport_failed
                                                         : code_of(err),
                              "compiling the dataflow failed at " + who(st, r) + ": "
                                + describe(err));
          fail_all_steps(self, e);
        });
  }
}

} // namespace

caf::result<model_runner_output> submit_step(driver_ptr self, scheduler_output step,
                                             bool fail_fast) {
  auto& st = self->state;
  if (st.ranks.empty())
    return make_error(errc::not_ready, "execute_model before the workers exist");
  if (st.recovering)
    return make_error(errc::not_ready, "the executor is recovering (" + st.recovery_reason
                                         + "); resubmit once state() is ready again");
  for (size_t r = 0; r < st.ranks.size(); ++r)
    if (st.ranks[r].gone || st.ranks[r].probing)
      return make_error(errc::worker_lost,
                        who(st, static_cast<int>(r)) + " is gone (" + st.ranks[r].why + ")");
  if (fail_fast && (!st.window.can_dispatch() || !st.queued.empty()))
    return make_error(errc::too_many_in_flight,
                      std::to_string(st.window.in_flight()) + " step(s) in flight, the limit "
                        + "(max_concurrent_batches) is "
                        + std::to_string(st.window.max_in_flight())
                        + "; wait for a result before submitting more");
  auto p = std::make_shared<pending_step>();
  p->step = std::move(step);
  p->fail_fast = fail_fast;
  p->rp = self->make_response_promise<model_runner_output>();
  st.queued.push_back(p);
  if (st.rebuilding)
    spdlog::debug("step {} waits for the TP communicators to be rebuilt", p->step.step_id);
  else if (st.dag == driver_state::dag_state::none)
    compile(self);
  else
    try_dispatch(self);
  return p->rp;
}

void on_step_result(driver_ptr self, uint64_t seq, int rank, model_runner_output& out) {
  auto& st = self->state;
  auto i = st.in_flight.find(seq);
  if (i == st.in_flight.end())
    return; // late report of a step that already failed
  auto& p = i->second;
  p->owing.erase(rank);
  if (st.kv) {
    if (rank >= 0 && static_cast<size_t>(rank) < p->outputs.size())
      p->outputs[rank] = std::move(out);
    if (p->owing.empty())
      finish(self, seq, caf::none);
    return;
  }
  if (rank == output_rank(st)) {
    p->output = std::move(out);
    finish(self, seq, caf::none);
  }
}

void on_step_progress(driver_ptr self, uint64_t seq, int rank) {
  auto i = self->state.in_flight.find(seq);
  if (i != self->state.in_flight.end())
    i->second->owing.erase(rank);
}

void on_step_failed(driver_ptr self, uint64_t seq, int rank, caf::error& err) {
  auto& st = self->state;
  // A broken TP communicator or channel fails every later step too: under the restart
  // policy it is rebuilt (no worker is lost). A lost worker is handled by its down_msg.
  bool broken = code_of(err) == errc::transport_failed
                && (st.in_flight.count(seq) > 0 || is_direct_seq(seq));
  auto reason = describe(err);
  finish(self, seq, std::move(err));
  if (broken && restarts(st) && !st.recovering)
    begin_recovery(self, -1,
                   "a transport failed at rank " + std::to_string(rank) + ": " + reason);
}

namespace {

void fail_overdue_step(driver_ptr self, uint64_t seq) {
  auto& st = self->state;
  auto i = st.in_flight.find(seq);
  if (i == st.in_flight.end())
    return;
  auto& owing = i->second->owing;
  // Name the earliest stage that still owes output: the step is stuck there.
  int stage = owing.empty() ? st.pp - 1 : *owing.begin() / st.tp;
  std::string ranks;
  for (int r : owing)
    if (r / st.tp == stage)
      ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  auto err = make_error(errc::timeout,
                        "step " + std::to_string(i->second->step.step_id) + " missed its "
                          + std::to_string(st.opts.step_timeout.count())
                          + " ms deadline: stage " + std::to_string(stage) + " rank(s) ["
                          + ranks
                          + "] still owe output; check those workers' logs, or raise "
                            "--step-timeout");
  finish(self, seq, err);
}

} // namespace

void on_step_deadline(driver_ptr self, uint64_t) {
  auto overdue = self->state.deadlines.expire(self->clock().now());
  arm_deadline_timer(self, overdue.arm_at);
  for (auto seq : overdue.keys)
    fail_overdue_step(self, seq);
}

void fail_all_steps(driver_ptr self, const caf::error& err) {
  auto& st = self->state;
  if (st.shm)
    st.shm->lane().close(err); // and the caller's step on the direct lane
  auto queued = std::move(st.queued);
  st.queued.clear();
  for (auto& p : queued)
    p->rp.deliver(err);
  std::vector<uint64_t> seqs;
  for (auto& kv : st.in_flight)
    seqs.push_back(kv.first);
  for (auto seq : seqs)
    finish(self, seq, err);
}

caf::result<bool> teardown_dataflow(driver_ptr self, bool rebuild) {
  auto& st = self->state;
  // Steps in flight may have left the TP ranks of a stage at different collectives (one
  // read its step, its peer's ring closed first): then every rank closes its
  // communicator too, and the answer (true) tells the executor to rebuild them.
  const bool closes = rebuild || st.window.in_flight() > 0
                      || (st.shm && st.shm->lane().busy());
  ++st.generation; // late compile answers of the old generation are ignored
  st.dag = driver_state::dag_state::none;
  fail_all_steps(self, make_error(errc::not_ready, "the dataflow was torn down while this "
                                                   "step was pending; submit it again"));
  st.done.reset(st.window.next_seq());
  retire_shm(st, make_error(errc::not_ready, "the dataflow was torn down"));
  if (closes) {
    st.rebuilding = true;
    self->delayed_send(self, st.opts.rebuild_timeout, rebuilt_atom::value,
                       ++st.rebuild_number);
  }
  auto rp = self->make_response_promise<bool>();
  auto remaining = std::make_shared<size_t>(st.ranks.size());
  if (*remaining == 0) {
    rp.deliver(false);
    return rp;
  }
  auto answered = [rp, remaining, closes]() mutable {
    if (--*remaining == 0)
      rp.deliver(closes);
  };
  for (auto& slot : st.ranks) {
    if (closes)
      self
        ->request(slot.worker, defaults::worker_teardown_timeout, teardown_atom::value,
                  recover_atom::value)
        .then([answered](bool) mutable { answered(); },
              [answered](caf::error&) mutable { answered(); });
    else
      self->request(slot.worker, defaults::worker_teardown_timeout, teardown_atom::value)
        .then([answered](bool) mutable { answered(); },
              [answered](caf::error&) mutable { answered(); });
  }
  return rp;
}

bool end_rebuild(driver_ptr self, const std::string& why) {
  auto& st = self->state;
  if (!st.rebuilding)
    return false;
  st.rebuilding = false;
  if (why.empty()) {
    if (!st.queued.empty() && st.dag == driver_state::dag_state::none)
      compile(self);
    return true;
  }
  auto reason = "the TP communicators could not be rebuilt after a teardown: " + why;
  fail_all_steps(self, make_error(errc::transport_failed,
                                  reason
                                    + "; call reinitialize_distributed() or restart "
                                      "the executor"));
  if (restarts(st) && !st.recovering)
    begin_recovery(self, -1, reason);
  return true;
}

void on_rebuild_deadline(driver_ptr self, uint64_t number) {
  auto& st = self->state;
  if (!st.rebuilding || number != st.rebuild_number)
    return;
  end_rebuild(self, "the executor did not report the rebuild within "
                      + std::to_string(st.opts.rebuild_timeout.count()) + " ms");
}

void retire_shm(driver_state& st, const caf::error& why) {
  if (!st.shm)
    return;
  if (st.opts.lane)
    st.opts.lane->publish(nullptr);
  st.shm->close(why);
  st.shm.reset();
}

void on_lane_free(driver_ptr self) {
  try_dispatch(self);
}

std::string dataflow_stats(const driver_state& st) {
  uint64_t lane_ok = st.lane_counts->ok;
  uint64_t lane_failed = st.lane_counts->failed;
  nlohmann::json j = {{"compiled", st.dag == driver_state::dag_state::ready},
                      {"hot_path", st.shm ? "shm" : st.opts.channel},
                      {"generation", st.generation},
                      {"in_flight", st.window.in_flight()},
                      {"max_in_flight", st.window.max_in_flight()},
                      {"max_observed", st.window.max_observed()},
                      {"dispatched", st.window.next_seq()},
                      {"queued", st.queued.size()},
                      {"rebuilding", st.rebuilding},
                      {"steps_ok", st.steps_ok + lane_ok},
                      {"steps_failed", st.steps_failed + lane_failed},
                      {"direct_steps", lane_ok + lane_failed},
                      {"direct_running", st.shm && st.shm->lane().busy()},
                      {"direct_calls", st.lane_counts->calls.load()}};
  // Each PP stage's TP group, by the transport its ranks said they use.
  auto stages = nlohmann::json::array();
  for (size_t r = 0; r < st.ranks.size(); r += static_cast<size_t>(std::max(1, st.tp)))
    stages.push_back(st.ranks[r].tp_transport.empty() ? "unknown" : st.ranks[r].tp_transport);
  j["tp_transport"] = stages;
  return j.dump();
}

} // namespace cafex
