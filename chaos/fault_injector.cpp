#include "chaos/fault_injector.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cafex/executor.hpp"
#include "chaos/runner.hpp"
#include "runtime/os/errno_text.hpp"
#include "runtime/os/process_state.hpp"

namespace cafex {

namespace {

using act = scenario_fault::action;
using lock = std::lock_guard<std::recursive_mutex>;

/// How long a SIGSTOP may take to stop every thread of its target.
constexpr std::chrono::milliseconds stop_timeout{2000};

int64_t ms_between(fault_injector::clock_type::time_point a,
                   fault_injector::clock_type::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

} // namespace

fault_injector::fault_injector(const std::vector<scenario_fault>& faults, host_faults* hosts,
                               error_sink on_error, logger log)
  : faults_(faults),
    hosts_(hosts),
    on_error_(std::move(on_error)),
    log_(std::move(log)),
    done_(faults.size(), false) {}

void fault_injector::refresh_pids() {
  if (ex_ == nullptr)
    return;
  auto info = ex_->collective_rpc("process_info", nullptr, std::chrono::milliseconds(10000));
  if (!info) {
    log_("process_info: " + describe(info.error()));
    return;
  }
  lock guard{mtx_};
  for (const auto& w : *info)
    if (w.is_object() && w.contains("rank") && w.contains("pid"))
      pids_[w["rank"].get<int>()] = w["pid"].get<long>();
}

void fault_injector::miss_phase_faults(const std::string& why) {
  for (size_t i = 0; i < faults_.size(); ++i) {
    const auto& f = faults_[i];
    if (done_[i] || !f.during || f.during != phase_)
      continue;
    done_[i] = true;
    auto line = std::string("missed: ") + to_string(f.what) + " during " + to_string(*f.during)
                + " at " + std::to_string(f.at_ms) + " ms: " + why;
    log_(line);
    log_lines_.push_back(line);
  }
}

void fault_injector::phase_begins(const startup_event& ev) {
  lock guard{mtx_};
  if (phase_)
    miss_phase_faults(std::string(to_string(*phase_)) + " ended first");
  phase_ = ev.phase;
  phase_began_ = clock_type::now();
  for (size_t r = 0; r < ev.worker_pids.size(); ++r)
    if (ev.worker_pids[r] > 0)
      pids_[static_cast<int>(r)] = static_cast<long>(ev.worker_pids[r]);
  for (size_t i = 0; i < faults_.size(); ++i) {
    const auto& f = faults_[i];
    if (done_[i] || f.during != ev.phase || f.at_ms > 0)
      continue;
    done_[i] = true; // before the phase's first call goes out
    apply(f, std::string("start of ") + to_string(ev.phase));
  }
}

void fault_injector::startup_over() {
  lock guard{mtx_};
  if (phase_)
    miss_phase_faults("start-up was over first");
  phase_.reset();
}

void fault_injector::first_submission() {
  lock guard{mtx_};
  if (!first_)
    first_ = clock_type::now();
}

void fault_injector::apply_due(int n) {
  lock guard{mtx_};
  auto now = clock_type::now();
  for (size_t i = 0; i < faults_.size(); ++i) {
    const auto& f = faults_[i];
    if (done_[i])
      continue;
    bool due = false;
    std::string when;
    if (f.during) {
      due = phase_ == f.during && ms_between(phase_began_, now) >= f.at_ms;
      when = std::to_string(f.at_ms) + " ms into " + to_string(*f.during);
    } else if (f.at_ms < 0) {
      due = n >= 0 && f.at_step == n;
      when = "step " + std::to_string(n);
    } else {
      due = first_ && ms_between(*first_, now) >= f.at_ms;
      when = "at " + std::to_string(f.at_ms) + " ms";
    }
    if (!due)
      continue;
    done_[i] = true;
    apply(f, when);
  }
}

std::optional<fault_injector::clock_type::time_point> fault_injector::last_fault() const {
  lock guard{mtx_};
  return last_fault_;
}

std::vector<std::string> fault_injector::applied() const {
  lock guard{mtx_};
  return log_lines_;
}

void fault_injector::release() {
  lock guard{mtx_};
  for (auto pid : stopped_)
    ::kill(static_cast<pid_t>(pid), SIGCONT); // a stopped worker cannot be shut down
  stopped_.clear();
  for (int node : stopped_agents_)
    if (hosts_ != nullptr)
      hosts_->continue_agent(node); // nor can a stopped agent stop its workers
  stopped_agents_.clear();
}

void fault_injector::call(const std::string& method, const std::string& args_json) {
  if (ex_ == nullptr) { // the parser refuses fault methods during start-up
    on_error_(make_error(errc::not_ready, method + " before the executor started"), method);
    return;
  }
  auto r = ex_->collective_rpc(method, nlohmann::json::parse(args_json),
                               std::chrono::milliseconds(15000));
  if (!r)
    on_error_(r.error(), method);
}

void fault_injector::signal_rank(int rank, int sig, std::string& what) {
  auto it = pids_.find(rank);
  if (it == pids_.end()) {
    what += " (no pid known for the rank: not sent)";
    return;
  }
  what += " (pid " + std::to_string(it->second) + ")";
  if (sig == SIGSTOP)
    stopped_.insert(it->second);
  if (sig == SIGCONT)
    stopped_.erase(it->second);
  if (::kill(static_cast<pid_t>(it->second), sig) != 0) {
    what += " failed: " + errno_text(errno);
    return;
  }
  // A fault "as a phase begins" must be in place before the phase's first call goes out:
  // kill() returns before the target stops, and a loaded machine runs its threads on.
  if (sig == SIGSTOP && !wait_stopped(static_cast<pid_t>(it->second), stop_timeout))
    what += " (not stopped within " + std::to_string(stop_timeout.count()) + " ms)";
}

void fault_injector::apply(const scenario_fault& f, const std::string& when) {
  std::string what = when + ": " + to_string(f.what);
  what += f.on_node() ? " node " + std::to_string(f.node) : " rank " + std::to_string(f.rank);
  if (f.is_fault())
    last_fault_ = clock_type::now();
  auto rank_arg = nlohmann::json{{"rank", f.rank}};
  switch (f.what) {
    case act::kill:
      what += " signal " + std::to_string(f.signal);
      signal_rank(f.rank, f.signal, what);
      break;
    case act::stop: signal_rank(f.rank, SIGSTOP, what); break;
    case act::cont: signal_rank(f.rank, SIGCONT, what); break;
    case act::fail_method:
      what += " (" + f.method + ")";
      call(f.method == "throw" ? "fault.throw" : "fault.fail", rank_arg.dump());
      break;
    case act::delay:
      what += " " + std::to_string(f.ms) + " ms x " + std::to_string(f.steps) + " step(s)";
      call("fault.delay",
           nlohmann::json{{"rank", f.rank}, {"ms", f.ms}, {"steps", f.steps}}.dump());
      break;
    case act::break_collective: call("fault.break_collective", rank_arg.dump()); break;
    case act::cut_link:
    case act::restore_link:
    case act::kill_agent:
    case act::stop_agent:
    case act::continue_agent: {
      caf::error err;
      if (hosts_ == nullptr) {
        err = make_error(errc::invalid_config, "no simulated hosts (cluster.hosts is 0)");
      } else if (f.what == act::cut_link) {
        err = hosts_->cut_link(f.node);
      } else if (f.what == act::restore_link) {
        err = hosts_->restore_link(f.node);
      } else if (f.what == act::kill_agent) {
        what += " signal " + std::to_string(f.signal);
        err = hosts_->kill_agent(f.node, f.signal);
      } else if (f.what == act::stop_agent) {
        err = hosts_->stop_agent(f.node);
        if (!err)
          stopped_agents_.insert(f.node);
      } else {
        err = hosts_->continue_agent(f.node);
        stopped_agents_.erase(f.node);
      }
      if (err)
        what += " failed: " + describe(err);
      break;
    }
  }
  log_(what);
  log_lines_.push_back(what);
}

} // namespace cafex
