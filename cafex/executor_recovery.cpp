// The restart policy (--on-worker-failure restart): the driver reports a lost worker or a
// broken communicator; this thread replaces lost workers on their bundles, re-runs their
// lifecycle, rebuilds every rank's communicators under a new generation and tells the
// driver that steps may run again. Every step is bounded by the start-up timeout.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "cafex/executor_impl.hpp"

namespace cafex {

namespace {

/// Options of an rpc that recovery issues (it runs while steps are held back), to
/// `ranks` only (empty: every rank).
rpc_options during_recovery(std::vector<int32_t> ranks = {}) {
  rpc_options ro;
  ro.ranks = std::move(ranks);
  ro.recovery = true;
  return ro;
}

} // namespace

void executor::impl::request_recovery(int32_t rank, std::string why) {
  {
    std::lock_guard<std::mutex> guard{recovery_mtx};
    if (recovery_stop)
      return;
    recovery_requests.emplace_back(rank, std::move(why));
  }
  recovery_cv.notify_one();
}

void executor::impl::stop_recovery() {
  {
    std::lock_guard<std::mutex> guard{recovery_mtx};
    recovery_stop = true;
  }
  recovery_cv.notify_all();
  if (recovery_thread.joinable())
    recovery_thread.join();
}

void executor::impl::recovery_loop() {
  for (;;) {
    std::string why;
    {
      std::unique_lock<std::mutex> lock{recovery_mtx};
      recovery_cv.wait(lock, [&] { return recovery_stop || !recovery_requests.empty(); });
      if (recovery_stop)
        return;
      why = recovery_requests.front().second;
      recovery_requests.clear();
    }
    caf::error err;
    if (++recoveries > opts.max_restarts)
      err = make_error(errc::worker_lost, "gave up after " + std::to_string(opts.max_restarts)
                                            + " recoveries (max_restarts); restart the "
                                              "executor");
    else
      err = recover_once(why);
    {
      // Another loss while recovering: recover again before steps may run. The attempt
      // it cut short fails with whatever its ranks saw first (the lost rank's calls fail
      // with worker_lost; its peers' rendezvous with transport_failed or a timeout), and
      // the loss itself is reported a few ms later: after any failed attempt, wait
      // (bounded) for such a report rather than giving up.
      std::unique_lock<std::mutex> guard{recovery_mtx};
      if (err && recoveries <= opts.max_restarts)
        recovery_cv.wait_for(guard, opts.liveness.cause_timeout + defaults::recovery_settle,
                             [&] { return recovery_stop || !recovery_requests.empty(); });
      if (recovery_stop)
        return;
      if (!recovery_requests.empty() && (!err || recoveries <= opts.max_restarts))
        continue;
    }
    if (err)
      spdlog::error("recovery failed: {}", describe(err));
    ask<bool>(driver, defaults::recovered_timeout, recovered_atom::value, !err,
              err ? describe(err) : std::string());
  }
}

void executor::impl::join_incident(const std::set<int32_t>& covered) {
  std::lock_guard<std::mutex> guard{recovery_mtx};
  auto& q = recovery_requests;
  q.erase(std::remove_if(q.begin(), q.end(),
                         [&](const auto& req) {
                           return req.first < 0 || covered.count(req.first) > 0;
                         }),
          q.end());
}

caf::expected<std::vector<worker_health>>
executor::impl::settled_health(clock::time_point deadline) {
  // Which ranks are lost: wait (bounded) until the driver knows how each lost link ended.
  const auto settle = clock::now() + opts.liveness.cause_timeout + defaults::recovery_settle;
  for (;;) {
    auto h = ask<std::vector<worker_health>>(driver, time_left(deadline), health_atom::value);
    if (!h)
      return h.error();
    bool probing = false;
    for (const auto& w : *h)
      probing = probing || w.cause.what == failure_cause::kind::link_dropped;
    if (!probing || clock::now() >= settle)
      return h;
    std::unique_lock<std::mutex> lock{recovery_mtx};
    if (recovery_cv.wait_for(lock, defaults::recovery_poll, [&] { return recovery_stop; }))
      return make_error(errc::not_ready, "the executor is shutting down");
  }
}

caf::expected<int32_t> executor::impl::respawn_rank(const worker_health& w,
                                                    clock::time_point deadline) {
  auto rank = w.rank;
  // A stopped or cut-off process still holds its device and its sockets: end it first,
  // so that the ranks blocked on it fail at once and let go.
  auto how = ask<std::string>(driver, time_left(deadline), kill_atom::value, rank);
  spdlog::info("rank {}: old worker {}", rank, how ? *how : describe(how.error()));
  auto created = rank < static_cast<int32_t>(created_of.size()) ? created_of[rank] : rank;
  // The driver lost the node's agent too (or the link said the node is unreachable).
  bool suspect = node_suspect(w.cause);
  auto fresh = nodes->respawn(created, rank, opts.log_level, deadline, suspect);
  if (!fresh)
    return fresh.error();
  if (fresh->moved) {
    // Its node is gone: it runs elsewhere, with that node's devices and local rank.
    auto moved = plan_moved_rank(plan, rank, fresh->node_id, fresh->ip, fresh->gpu_id);
    if (!moved)
      return moved.error();
    plan.workers[rank] = *moved;
    envs[rank] = moved->env;
    kwargs[rank]["local_rank"] = moved->local_rank;
  }
  if (auto ok = ask<bool>(driver, time_left(deadline), replace_atom::value, rank,
                          fresh->worker, fresh->node_id, fresh->ip, fresh->agent);
      !ok)
    return ok.error();
  // The driver answers in order: any report about this rank queued before it installed
  // the new worker was about the old one.
  join_incident({rank});
  return rank;
}

void executor::impl::fence_rendezvous(int generation) {
  if (store)
    store->fence(static_cast<uint32_t>(generation));
}

caf::error executor::impl::recover_once(const std::string& why) {
  const auto t0 = clock::now();
  const auto deadline = t0 + opts.start_timeout;
  spdlog::warn("recovery {}: {}", recoveries, why);
  // This attempt's communicator generation, taken first: the ranks that still wait in the
  // rendezvous of an attempt a second loss cut short (for a peer that died) give up now,
  // so they answer this attempt's calls instead of holding them until their deadline.
  int generation = 0;
  {
    // executor::reinitialize_distributed bumps it too, from the caller's thread.
    std::lock_guard<std::mutex> guard{recovery_mtx};
    generation = ++comm_generation;
  }
  fence_rendezvous(generation);
  std::vector<int32_t> replaced;
  for (;;) {
    auto health = settled_health(deadline);
    if (!health)
      return health.error();
    // One incident, one recovery: the reports queued meanwhile about ranks this attempt
    // replaces (the killed rank's down and cause) or about a broken communicator (its
    // TP peer's transport_failed) are this loss, not new ones.
    std::set<int32_t> lost;
    for (const auto& w : *health)
      if (!is_alive(w.state)) // anything but healthy or rebuilding its communicators
        lost.insert(w.rank);
    join_incident(lost);
    for (const auto& w : *health) {
      if (lost.count(w.rank) == 0)
        continue;
      auto rank = respawn_rank(w, deadline);
      if (!rank)
        return rank.error();
      replaced.push_back(*rank);
    }
    if (!replaced.empty())
      break;
    // A communicator broke but no worker is known lost: make sure every worker answers
    // before asking all of them to rendezvous (a rank that died a moment ago would leave
    // the others waiting in the rendezvous until its timeout).
    auto r = rpc("noop", "null",
                 std::min(time_left(deadline), opts.liveness.connection_timeout),
                 during_recovery());
    if (r)
      break;
    auto err = make_error(errc::worker_lost, "a worker did not answer before the rebuild: "
                                               + describe(r.error()));
    // The peer's transport failure came first and the lost worker's own report is on its
    // way (a few ms: its agent reaps it): wait for it and replace that worker in this same
    // recovery, instead of counting a second one.
    std::unique_lock<std::mutex> lock{recovery_mtx};
    auto wait = std::min(time_left(deadline),
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                           opts.liveness.cause_timeout + defaults::recovery_settle));
    if (!recovery_cv.wait_for(lock, wait,
                              [&] { return recovery_stop || !recovery_requests.empty(); })
        || recovery_stop)
      return err;
  }
  if (!replaced.empty()) {
    // The seed's lifecycle for the new workers only: environment, then init_worker with
    // the rank they replace. init_device and load_model happen in
    // reinitialize_distributed below, together with the communicators of every rank.
    for (auto rank : replaced)
      kwargs[rank]["init_timeout_ms"] = time_left(deadline).count();
    if (auto r = rpc("update_environment_variables", envs.dump(), time_left(deadline),
                     during_recovery(replaced));
        !r)
      return r.error();
    if (auto r = rpc("init_worker", kwargs.dump(), time_left(deadline),
                     during_recovery(replaced));
        !r)
      return r.error();
  }
  nlohmann::json args = {{"generation", generation},
                         {"timeout_ms", time_left(deadline).count()}};
  if (auto r = rpc("reinitialize_distributed", args.dump(), time_left(deadline),
                   during_recovery());
      !r)
    return r.error();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0).count();
  spdlog::info("recovered in {} ms: {} rank(s) replaced, communicators at generation {}", ms,
               replaced.size(), generation);
  return caf::none;
}

} // namespace cafex
