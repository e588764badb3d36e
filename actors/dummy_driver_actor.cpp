#include "actors/dummy_driver_actor.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include <algorithm>
#include <memory>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"

namespace cafex {

namespace {

/// `agent` answered the kill, or was lost: deliver once nobody owes an answer.
void settle(dummy_driver_state::kill_wait& k, const caf::actor_addr& agent) {
  if (k.owed.erase(agent) > 0 && k.owed.empty())
    k.rp.deliver(k.total);
}

} // namespace

std::string this_driver_label() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0)
    std::snprintf(host, sizeof host, "unknown-host");
  static const auto started = std::time(nullptr); // the first call: near start-up
  std::tm utc{};
  ::gmtime_r(&started, &utc);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string("driver on ") + host + ", pid " + std::to_string(::getpid()) + ", since "
         + when;
}

dummy_driver_actor::behavior_type
dummy_driver_impl(dummy_driver_actor::stateful_pointer<dummy_driver_state> self,
                  std::chrono::milliseconds agent_timeout, std::string label) {
  self->state.agent_timeout = agent_timeout;
  self->state.label = std::move(label);
  // A lost agent (killed, or its node cut off) never answers: forget it, so that stopping
  // the workers at shutdown does not wait agent_timeout for it. Its own workers die with
  // it (PR_SET_PDEATHSIG) or are stopped by it when it loses this driver.
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& on = self->state.spawned_on;
    on.erase(std::remove_if(on.begin(), on.end(),
                            [&](const node_agent_actor& a) {
                              return a.address() == dm.source;
                            }),
             on.end());
    auto& held = self->state.reservations;
    held.erase(std::remove_if(held.begin(), held.end(),
                              [&](const auto& r) { return r.agent.address() == dm.source; }),
               held.end());
    // The loss may be noticed only after a kill went out to it (seen in test_node_failures).
    if (auto k = self->state.killing)
      settle(*k, dm.source);
  });
  return {
    [self](hold_atom, const node_agent_actor& agent,
           const std::vector<bundle_claim>& claims) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      self
        ->request(agent, self->state.agent_timeout, reserve_atom::value, claims,
                  self->state.label)
        .then(
          [self, rp, agent](uint64_t id) mutable {
            self->state.reservations.push_back({agent, id});
            rp.deliver(id);
          },
          [rp](caf::error& e) mutable {
            rp.deliver(e == caf::sec::request_timeout
                         ? make_error(errc::timeout, "a node agent did not answer a "
                                                     "reservation in time")
                         : std::move(e));
          });
      return rp;
    },
    [self](spawn_atom, const node_agent_actor& agent,
           const spawn_request& req) -> caf::result<worker_actor, uint16_t> {
      auto& on = self->state.spawned_on;
      if (std::find(on.begin(), on.end(), agent) == on.end()) {
        on.push_back(agent);
        self->monitor(agent);
      }
      auto rp = self->make_response_promise<worker_actor, uint16_t>();
      // The agent enforces the register deadline; this bound only guards a lost agent.
      auto timeout = std::chrono::milliseconds(req.register_timeout_ms)
                     + self->state.agent_timeout;
      self->request(agent, timeout, spawn_atom::value, req)
        .then([rp](worker_actor& w, uint16_t port) mutable { rp.deliver(std::move(w), port); },
              [rp, req](caf::error& e) mutable {
                rp.deliver(e == caf::sec::request_timeout
                             ? make_error(errc::timeout, "worker for rank "
                                                           + std::to_string(req.created_rank)
                                                           + " did not start in time")
                             : std::move(e));
              });
      return rp;
    },
    [self](kill_atom) -> caf::result<int32_t> {
      auto rp = self->make_response_promise<int32_t>();
      auto agents = std::move(self->state.spawned_on);
      self->state.spawned_on.clear();
      if (agents.empty()) {
        rp.deliver(int32_t{0});
        return rp;
      }
      auto k = std::make_shared<dummy_driver_state::kill_wait>();
      k->rp = rp;
      for (auto& a : agents)
        k->owed.insert(a.address());
      self->state.killing = k;
      for (auto& a : agents) {
        auto addr = a.address();
        self->request(a, self->state.agent_timeout, kill_atom::value)
          .then(
            [k, addr](int32_t n) {
              k->total += n;
              settle(*k, addr);
            },
            [k, addr](caf::error&) { settle(*k, addr); });
      }
      return rp;
    },
    [self](release_atom) -> int32_t {
      auto n = static_cast<int32_t>(self->state.reservations.size());
      for (auto& r : self->state.reservations)
        self->request(r.agent, self->state.agent_timeout, release_atom::value, r.id)
          .then([](bool) {}, [](caf::error&) {}); // the agent also frees on our exit
      self->state.reservations.clear();
      return n;
    },
  };
}

} // namespace cafex
