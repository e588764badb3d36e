#include "actors/node_agent_actor.hpp"

#include <random>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "runtime/version.hpp"

namespace cafex {

namespace {

using state_ptr = node_agent_actor::stateful_pointer<node_agent_state>;

std::string join_ints(const std::vector<int>& xs) {
  std::string out;
  for (auto x : xs)
    out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

void schedule_reap(state_ptr self) {
  if (self->state.reaping || self->state.children.empty())
    return;
  self->state.reaping = true;
  self->delayed_send(self, self->state.opts.reap_interval, reap_atom::value);
}

/// Polls every child: reports deaths before registration, enforces the register
/// deadline, forgets children that ended.
void reap(state_ptr self) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  for (auto i = st.children.begin(); i != st.children.end();) {
    auto& c = i->second;
    auto rank = std::to_string(c.req.created_rank);
    if (auto status = c.proc.try_wait()) {
      if (!c.registered)
        c.rp.deliver(make_error(errc::spawn_failed,
                                "worker for rank " + rank + " on node " + st.opts.info.node_id
                                  + " exited before registering (" + status->describe()
                                  + "); see its log above"));
      else
        spdlog::warn("worker rank {} (pid {}) ended: {}", rank, c.proc.pid(),
                     status->describe());
      i = st.children.erase(i);
      continue;
    }
    if (!c.registered && now > c.deadline) {
      c.proc.terminate(st.opts.kill_grace);
      c.rp.deliver(make_error(errc::timeout, "worker for rank " + rank + " on node "
                                               + st.opts.info.node_id
                                               + " did not register in time; is the node "
                                                 "overloaded or the worker program wrong?"));
      i = st.children.erase(i);
      continue;
    }
    ++i;
  }
}

int32_t kill_children_of(state_ptr self, const caf::actor_addr& owner) {
  int32_t n = 0;
  auto& st = self->state;
  for (auto i = st.children.begin(); i != st.children.end();) {
    if (owner && i->second.owner != owner) {
      ++i;
      continue;
    }
    auto status = i->second.proc.terminate(st.opts.kill_grace);
    spdlog::debug("stopped worker rank {}: {}", i->second.req.created_rank, status.describe());
    if (!i->second.registered)
      i->second.rp.deliver(make_error(errc::spawn_failed, "spawn cancelled: workers stopped"));
    i = st.children.erase(i);
    ++n;
  }
  return n;
}

} // namespace

std::string make_node_id() {
  std::random_device rd;
  std::mt19937_64 gen(rd());
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(gen()),
                static_cast<unsigned long long>(gen()));
  return buf;
}

node_agent_actor::behavior_type node_agent_impl(state_ptr self, node_agent_options opts) {
  self->state.opts = std::move(opts);
  self->set_down_handler([self](caf::down_msg& dm) {
    // A driver that goes away takes its workers with it.
    int n = kill_children_of(self, dm.source);
    if (n > 0)
      spdlog::info("driver went away ({}): stopped {} worker(s)", caf::to_string(dm.reason), n);
  });
  // When the agent quits, its state (and so every child_process, RAII) is destroyed:
  // no worker outlives its agent.
  return {
    [self](info_atom) -> node_info { return self->state.opts.info; },
    [self](listen_atom, const std::string& host, uint16_t port) {
      auto sender = self->current_sender();
      if (!sender || sender->node() != self->node())
        return; // only the local process may say where the agent listens
      self->state.listen_host = host;
      self->state.listen_port = port;
    },
    [self](spawn_atom, const spawn_request& req) -> caf::result<worker_actor> {
      auto& st = self->state;
      if (st.listen_port == 0)
        return make_error(errc::not_ready, "node agent is not published yet");
      auto id = st.next_spawn_id++;
      std::vector<std::string> argv{st.opts.worker_program,
                                    "worker",
                                    "--agent",
                                    st.listen_host + ":" + std::to_string(st.listen_port),
                                    "--spawn-id",
                                    std::to_string(id),
                                    "--rank",
                                    std::to_string(req.created_rank),
                                    "--bundle-index",
                                    std::to_string(req.bundle_index),
                                    "--node-id",
                                    st.opts.info.node_id,
                                    "--node-ip",
                                    st.opts.info.ip,
                                    "--devices",
                                    join_ints(req.device_ids),
                                    "--log-level",
                                    req.log_level};
      auto proc = child_process::spawn(argv);
      if (!proc)
        return proc.error();
      spdlog::debug("spawned worker rank {} (pid {}) for bundle {}", req.created_rank,
                    proc->pid(), req.bundle_index);
      node_agent_state::child c;
      c.proc = std::move(*proc);
      c.req = req;
      c.rp = self->make_response_promise<worker_actor>();
      auto sender = self->current_sender();
      if (sender) {
        c.owner = caf::actor_cast<caf::actor_addr>(sender);
        self->monitor(sender);
      }
      c.deadline = std::chrono::steady_clock::now()
                   + std::chrono::milliseconds(req.register_timeout_ms);
      auto rp = c.rp;
      st.children.emplace(id, std::move(c));
      schedule_reap(self);
      return rp;
    },
    [self](register_atom, uint64_t id, const std::string& ver,
           const worker_actor& handle) -> caf::result<std::string> {
      auto& st = self->state;
      auto i = st.children.find(id);
      if (i == st.children.end() || i->second.registered)
        return make_error(errc::unauthorized, "unknown or already registered worker id "
                                                + std::to_string(id));
      if (ver != version()) {
        auto err = make_error(errc::version_mismatch, "worker runs cafex " + ver
                                                        + " but node agent runs "
                                                        + version());
        i->second.rp.deliver(err);
        return err;
      }
      i->second.registered = true;
      i->second.rp.deliver(handle);
      return st.opts.info.node_id;
    },
    [self](kill_atom) -> int32_t {
      auto sender = self->current_sender();
      return kill_children_of(self, caf::actor_cast<caf::actor_addr>(sender));
    },
    [self](reap_atom) {
      self->state.reaping = false;
      reap(self);
      schedule_reap(self);
    },
  };
}

} // namespace cafex
