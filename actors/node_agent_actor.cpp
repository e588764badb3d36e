#include "actors/node_agent_actor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <csignal>
#include <fstream>
#include <optional>
#include <random>
#include <unistd.h>
#include <utility>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "runtime/failure_cause.hpp"
#include "runtime/os/worker_profiler.hpp"
#include "runtime/version.hpp"
#include "transport/caf_link.hpp"
#include "transport/shm_collective.hpp"

namespace cafex {

node_agent_state::~node_agent_state() {
  for (auto& [id, c] : children) {
    c.proc.terminate(opts.kill_grace);
    remove_shm_collectives_of(c.proc.pid());
  }
}

namespace {

using state_ptr = node_agent_actor::stateful_pointer<node_agent_state>;

/// Closes a descriptor unless released.
struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() { reset(); }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

void schedule_reap(state_ptr self) {
  auto& st = self->state;
  if (st.reaping || (st.children.empty() && st.cause_queries.empty()))
    return;
  st.reaping = true;
  // A pending cause question polls fast: a killed worker's link drops a few ms before
  // its process can be reaped.
  auto interval = st.cause_queries.empty() ? st.opts.reap_interval
                                           : defaults::cause_poll_interval;
  self->delayed_send(self, interval, reap_atom::value);
}

/// 'T' (stopped) or 't' (traced) in /proc/PID/stat.
bool process_stopped(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line))
    return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size()
         && (line[close + 2] == 'T' || line[close + 2] == 't');
}

void remember_end(node_agent_state& st, const std::string& worker_id, failure_cause cause) {
  if (worker_id.empty())
    return;
  if (st.ended.size() >= 1024)
    st.ended.erase(st.ended.begin());
  st.ended[worker_id] = cause;
}

bool stopped_now(const node_agent_state& st, const std::string& worker_id) {
  for (const auto& [id, c] : st.children)
    if (c.worker_id == worker_id)
      return process_stopped(c.proc.pid());
  return false;
}

/// Answers the cause questions that can be answered now (or whose deadline passed).
void answer_causes(state_ptr self) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  for (auto i = st.cause_queries.begin(); i != st.cause_queries.end();) {
    std::optional<failure_cause> answer;
    if (auto e = st.ended.find(i->worker_id); e != st.ended.end()) {
      answer = e->second;
    } else if (stopped_now(st, i->worker_id)) {
      // A stopped process will not end by itself: say so now rather than after cause_wait
      // (a SIGSTOPped worker was reported about 200 ms later than its link timeout).
      answer = still_running(true);
    } else if (now >= i->deadline) {
      answer = failure_cause{}; // unknown: this agent never started it
      for (auto& [id, c] : st.children)
        if (c.worker_id == i->worker_id)
          answer = still_running(process_stopped(c.proc.pid()));
    }
    if (!answer) {
      ++i;
      continue;
    }
    i->rp.deliver(*answer);
    i = st.cause_queries.erase(i);
  }
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
      remember_end(st, c.worker_id, process_ended(status->signaled, status->code));
      // A TP group's segment its creator made and died before its peers mapped it.
      if (int n = remove_shm_collectives_of(c.proc.pid()); n > 0)
        spdlog::info("removed {} shared-memory segment(s) of worker pid {}", n, c.proc.pid());
      i = st.children.erase(i);
      continue;
    }
    if (!c.registered && now > c.deadline) {
      c.proc.terminate(st.opts.kill_grace);
      remove_shm_collectives_of(c.proc.pid());
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
    remove_shm_collectives_of(i->second.proc.pid());
    remember_end(st, i->second.worker_id, process_ended(status.signaled, status.code));
    spdlog::debug("stopped worker rank {}: {}", i->second.req.created_rank, status.describe());
    if (!i->second.registered)
      i->second.rp.deliver(make_error(errc::spawn_failed, "spawn cancelled: workers stopped"));
    i = st.children.erase(i);
    ++n;
  }
  return n;
}

/// Remote drivers must have passed the version check before asking for anything.
caf::error check_peer(state_ptr self, const caf::strong_actor_ptr& sender) {
  if (!sender || sender->node() == self->node()
      || self->state.checked_peers.count(sender->node()) > 0)
    return caf::none;
  return make_error(errc::unauthorized, "node agent " + self->state.opts.info.node_id
                                          + " serves drivers only after the version check; "
                                            "connect with `cafex run --nodes`");
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
  self->state.ledger = resource_ledger(self->state.opts.info.device_ids);
  self->set_down_handler([self](caf::down_msg& dm) {
    // A driver that goes away takes its workers and its reservations with it.
    auto& st = self->state;
    const auto owner = caf::to_string(dm.source);
    std::string who = owner; // its readable name, when one of its reservations gave it
    for (const auto& [id, r] : st.ledger.held())
      if (r.owner == owner && st.driver_names.count(id) != 0) {
        who = st.driver_names[id];
        break;
      }
    int n = kill_children_of(self, dm.source);
    if (n > 0)
      spdlog::info("{} went away ({}): stopped {} worker(s)", who, caf::to_string(dm.reason),
                   n);
    std::vector<uint64_t> gone;
    for (const auto& [id, r] : st.ledger.held())
      if (r.owner == owner)
        gone.push_back(id);
    int r = st.ledger.release(owner, 0);
    for (auto id : gone) {
      st.driver_names.erase(id);
      st.reserved_at.erase(id);
    }
    if (r > 0)
      spdlog::info("{} went away ({}): released {} reservation(s)", who,
                   caf::to_string(dm.reason), r);
  });
  // When the agent quits, its state (and so every child_process, RAII) is destroyed:
  // no worker outlives its agent.
  return {
    [self](version_atom, const std::string& peer) -> caf::result<std::string> {
      auto sender = self->current_sender();
      if (peer != version()) {
        spdlog::warn("refused a driver of cafex {} (this agent runs cafex {})", peer,
                     version());
        return make_error(errc::version_mismatch,
                          "the driver runs cafex " + peer + " but node agent "
                            + self->state.opts.info.node_id + " runs cafex " + version()
                            + "; run one cafex version on every node");
      }
      if (sender)
        self->state.checked_peers.insert(sender->node());
      return std::string(version());
    },
    [self](status_atom) -> caf::result<std::string> {
      auto sender = self->current_sender();
      if (auto err = check_peer(self, sender))
        return err;
      return agent_status_json(self->state);
    },
    [self](info_atom) -> node_info {
      auto info = self->state.opts.info;
      info.free_units = self->state.ledger.free_units();
      return info;
    },
    [self](reserve_atom, const std::vector<bundle_claim>& claims,
           const std::string& driver) -> caf::result<uint64_t> {
      auto sender = self->current_sender();
      if (!sender)
        return make_error(errc::invalid_argument, "anonymous reservations are refused");
      if (auto err = check_peer(self, sender))
        return err;
      auto owner = caf::to_string(caf::actor_cast<caf::actor_addr>(sender));
      auto id = self->state.ledger.reserve(owner, claims, self->state.opts.info.node_id);
      if (!id)
        return id.error();
      self->monitor(sender);
      // A readable name for the logs (a driver sends its own; the CAF address otherwise).
      const auto who = driver.empty() ? owner : driver.substr(0, 200);
      self->state.driver_names[*id] = who;
      self->state.reserved_at[*id] = std::chrono::steady_clock::now();
      spdlog::info("reserved {} bundle(s) as reservation {} for {}", claims.size(), *id, who);
      return *id;
    },
    [self](release_atom, uint64_t id) -> bool {
      auto owner = caf::to_string(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      size_t bundles = 0;
      for (const auto& [rid, r] : self->state.ledger.held())
        if (r.owner == owner && (id == 0 || rid == id))
          bundles += r.claims.size();
      const int released = self->state.ledger.release(owner, id);
      if (released > 0) {
        auto& names = self->state.driver_names;
        std::string who = owner;
        if (id != 0 && names.count(id) != 0)
          who = names[id];
        spdlog::info("{} released {} bundle(s) of reservation {}", who, bundles,
                     id == 0 ? std::string{"(all)"} : std::to_string(id));
        if (id != 0) {
          names.erase(id);
          self->state.reserved_at.erase(id);
        }
      }
      return released > 0;
    },
    [self](spawn_atom, const spawn_request& req) -> caf::result<worker_actor, uint16_t> {
      auto& st = self->state;
      // Read the sender first: make_response_promise() below moves it out of the current
      // message (CAF 0.17), and without an owner a driver that goes away (link cut, crash)
      // left its workers running on this node.
      auto sender = self->current_sender();
      if (auto err = check_peer(self, sender))
        return err;
      if (st.opts.require_reservation
          && (req.device_ids.size() != 1
              || !st.ledger.holds(req.reservation, req.bundle_index, req.device_ids[0])))
        return make_error(errc::unauthorized,
                          "node " + st.opts.info.node_id + " holds no reservation "
                            + std::to_string(req.reservation) + " for bundle "
                            + std::to_string(req.bundle_index)
                            + "; reserve the bundle before spawning its worker");
      auto id = st.next_spawn_id++;
      std::vector<std::string> argv{st.opts.worker_program,
                                    "worker",
                                    "--agent-fd",
                                    "3",
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
                                    fmt::format("{}", fmt::join(req.device_ids, ",")),
                                    "--log-level",
                                    req.log_level};
      // The worker's link to this agent is a socketpair, not a port: no other process can
      // reach it. With direct routes, a second one carries the drivers' connections.
      auto link = make_socketpair();
      if (!link)
        return link.error();
      fd_guard agent_end{link->first};
      fd_guard worker_end{link->second};
      fd_guard route_agent_end;
      fd_guard route_worker_end;
      std::vector<int> inherit{worker_end.fd};
      if (st.opts.routes) {
        auto ch = make_socketpair();
        if (!ch)
          return ch.error();
        route_agent_end.fd = ch->first;
        route_worker_end.fd = ch->second;
        inherit.push_back(route_worker_end.fd);
        argv.push_back("--route-fd");
        argv.push_back("4");
      }
      if (!st.opts.env_allow.empty()) {
        argv.push_back("--env-allow");
        argv.push_back(fmt::format("{}", fmt::join(st.opts.env_allow, ",")));
      }
      if (!req.profiler.empty()) {
        // Only a known profiler, found on this node's PATH: no program travels.
        auto prof = parse_worker_profiler(req.profiler);
        if (!prof)
          return prof.error();
        const char* path = std::getenv("PATH");
        auto wrapped = wrap_worker_argv(*prof, argv,
                                        find_executable(profiler_program(*prof),
                                                        path ? path : ""));
        if (!wrapped)
          return wrapped.error();
        argv = std::move(*wrapped);
      }
      auto proc = child_process::spawn(argv, {}, inherit);
      worker_end.reset();
      route_worker_end.reset();
      if (!proc)
        return proc.error();
      caf_link_serve(self->system(), agent_end.release(),
                     caf::actor_cast<caf::strong_actor_ptr>(self),
                     self->system().message_types<node_agent_actor>());
      spdlog::debug("spawned worker rank {} (pid {}) for bundle {}", req.created_rank,
                    proc->pid(), req.bundle_index);
      node_agent_state::child c;
      c.proc = std::move(*proc);
      c.req = req;
      if (route_agent_end.fd >= 0) {
        auto route = st.opts.routes->add(route_agent_end.release());
        if (route)
          c.route = route_lease(st.opts.routes, *route);
        else
          spdlog::warn("worker rank {} gets no direct route: {}", req.created_rank,
                       describe(route.error()));
      }
      c.rp = self->make_response_promise<worker_actor, uint16_t>();
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
    [self](register_atom, uint64_t id, const std::string& ver, const worker_actor& handle,
           uint16_t direct_port) -> caf::result<std::string> {
      auto& st = self->state;
      auto i = st.children.find(id);
      if (i == st.children.end() || i->second.registered)
        return make_error(errc::unauthorized,
                          "unknown or already registered worker id " + std::to_string(id));
      if (ver != version()) {
        auto err = make_error(errc::version_mismatch, "worker runs cafex " + ver
                                                        + " but node agent runs " + version());
        i->second.rp.deliver(err);
        return err;
      }
      i->second.registered = true;
      i->second.worker_id = worker_key(handle);
      // `direct_port` != 0: the worker serves drivers on its route channel. Drivers name
      // the route number in the front door's handshake.
      uint16_t route = direct_port != 0 ? i->second.route.route() : uint16_t{0};
      i->second.rp.deliver(handle, route);
      return st.opts.info.node_id;
    },
    [self](kill_atom) -> int32_t {
      // A remote driver stops its own workers; this process (the agent's command on
      // SIGTERM, or the embedded driver) stops all of them.
      auto sender = self->current_sender();
      if (sender && sender->node() == self->node())
        return kill_children_of(self, caf::actor_addr{});
      return kill_children_of(self, caf::actor_cast<caf::actor_addr>(sender));
    },
    [self](kill_atom, const std::string& worker_id) -> caf::result<failure_cause> {
      auto& st = self->state;
      auto sender = self->current_sender();
      if (auto err = check_peer(self, sender))
        return err;
      if (auto e = st.ended.find(worker_id); e != st.ended.end())
        return e->second;
      for (auto i = st.children.begin(); i != st.children.end(); ++i) {
        auto& c = i->second;
        if (c.worker_id != worker_id)
          continue;
        // Only the driver that started it (or this process) may kill it.
        bool local = sender && sender->node() == self->node();
        if (!local && (!sender || c.owner.node() != sender->node()))
          return make_error(errc::unauthorized, "worker " + worker_id + " on node "
                                                  + st.opts.info.node_id
                                                  + " belongs to another driver");
        // SIGKILL first: a stopped process would not act on SIGTERM.
        c.proc.signal(SIGKILL);
        auto status = c.proc.terminate(st.opts.kill_grace);
        remove_shm_collectives_of(c.proc.pid());
        auto cause = process_ended(status.signaled, status.code);
        remember_end(st, c.worker_id, cause);
        spdlog::warn("killed worker rank {} (being replaced): {}", c.req.created_rank,
                     status.describe());
        st.children.erase(i);
        return cause;
      }
      return failure_cause{}; // unknown: no record of it, it was gone already
    },
    [self](cause_atom, int32_t rank,
           const std::string& worker_id) -> caf::result<failure_cause> {
      auto& st = self->state;
      node_agent_state::cause_query q;
      q.worker_id = worker_id;
      q.rp = self->make_response_promise<failure_cause>();
      q.deadline = std::chrono::steady_clock::now() + st.opts.cause_wait;
      auto rp = q.rp;
      st.cause_queries.push_back(std::move(q));
      reap(self);
      answer_causes(self);
      schedule_reap(self);
      spdlog::debug("asked why worker rank {} (actor {}) ended", rank, worker_id);
      return rp;
    },
    [self](reap_atom) {
      self->state.reaping = false;
      reap(self);
      answer_causes(self);
      schedule_reap(self);
    },
  };
}

} // namespace cafex
