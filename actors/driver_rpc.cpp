#include "actors/driver_rpc.hpp"

#include "runtime/error.hpp"

namespace cafex {

namespace {

/// Adds rank and node to an error a worker returned, keeping its code.
caf::error attribute(const driver_state& st, int rank, const std::string& what,
                     const caf::error& err) {
  if (err == caf::sec::request_timeout)
    return make_error(errc::timeout, who(st, rank) + " did not answer " + what
                                       + " in time; the method may be stuck, or raise its "
                                         "timeout");
  if (code_of(err) != errc::none)
    return err; // workers already name their rank
  return make_error(errc::worker_lost,
                    who(st, rank) + " failed " + what + ": " + caf::to_string(err));
}

void finish_rpc(driver_ptr self, uint64_t id, caf::error err) {
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

/// The ranks a call goes to, in answer order; or why it cannot go out.
caf::expected<std::vector<int>> targets_of(const driver_state& st, const rpc_options& ro) {
  int n = static_cast<int>(st.ranks.size());
  if (n == 0)
    return make_error(errc::not_ready, "collective_rpc before the workers exist");
  if (ro.unique_reply_rank >= n || (ro.unique_reply_rank >= 0 && !ro.ranks.empty()))
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
                                                  + " is out of range for " + std::to_string(n)
                                                  + " workers");
    targets.push_back(r);
  }
  if (targets.empty())
    for (int r = 0; r < n; ++r)
      targets.push_back(r);
  for (int r : targets) {
    const auto& slot = st.ranks[r];
    if (slot.gone || slot.probing)
      return make_error(errc::worker_lost,
                        who(st, r)
                          + " is gone: " + (slot.probing ? "its link dropped" : slot.why)
                          + (restarts(st) ? "; the executor is replacing it"
                                          : "; shut the executor down and start it again"));
  }
  return targets;
}

} // namespace

caf::result<std::vector<std::string>> start_rpc(driver_ptr self, const std::string& method,
                                                const std::string& args,
                                                const rpc_options& ro) {
  auto& st = self->state;
  auto targets = targets_of(st, ro);
  if (!targets)
    return std::move(targets.error());
  auto timeout = ro.timeout_ms > 0 ? std::chrono::milliseconds(ro.timeout_ms)
                                   : st.opts.default_rpc_timeout;
  auto id = st.next_rpc++;
  auto p = std::make_shared<pending_rpc>();
  p->what = "method '" + method + "'";
  p->results.resize(targets->size());
  p->unique_reply_rank = ro.unique_reply_rank;
  p->rp = self->make_response_promise<std::vector<std::string>>();
  for (int r : *targets)
    p->waiting.insert(r);
  st.rpcs.emplace(id, p);
  for (size_t slot = 0; slot < targets->size(); ++slot) {
    int r = (*targets)[slot];
    self->request(st.ranks[r].worker, timeout, call_atom::value, method, args)
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
}

void fail_rpcs_waiting_for(driver_ptr self, int rank, const caf::error& err) {
  std::vector<uint64_t> ids;
  for (auto& [id, p] : self->state.rpcs)
    if (p->waiting.count(rank))
      ids.push_back(id);
  for (auto id : ids)
    finish_rpc(self, id, err);
}

void fail_all_rpcs(driver_ptr self, const caf::error& err) {
  std::vector<uint64_t> ids;
  for (auto& kv : self->state.rpcs)
    ids.push_back(kv.first);
  for (auto id : ids)
    finish_rpc(self, id, err);
}

} // namespace cafex
