#include "chaos/fault_injector.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cafex/executor.hpp"
#include "chaos/runner.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex {

namespace {

using act = scenario_fault::action;

int64_t ms_between(fault_injector::clock_type::time_point a,
                   fault_injector::clock_type::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

} // namespace

fault_injector::fault_injector(const std::vector<scenario_fault>& faults, executor& ex,
                               host_faults* hosts, error_sink on_error, logger log)
  : faults_(faults),
    ex_(ex),
    hosts_(hosts),
    on_error_(std::move(on_error)),
    log_(std::move(log)),
    done_(faults.size(), false) {}

void fault_injector::refresh_pids() {
  auto info = ex_.collective_rpc("process_info", nullptr, std::chrono::milliseconds(10000));
  if (!info) {
    log_("process_info: " + describe(info.error()));
    return;
  }
  for (const auto& w : *info)
    if (w.is_object() && w.contains("rank") && w.contains("pid"))
      pids_[w["rank"].get<int>()] = w["pid"].get<long>();
}

void fault_injector::first_submission() {
  if (!first_)
    first_ = clock_type::now();
}

void fault_injector::apply_due(int n) {
  for (size_t i = 0; i < faults_.size(); ++i) {
    const auto& f = faults_[i];
    if (done_[i])
      continue;
    bool due = f.at_ms < 0 ? (n >= 0 && f.at_step == n)
                           : (first_ && ms_between(*first_, clock_type::now()) >= f.at_ms);
    if (!due)
      continue;
    done_[i] = true;
    apply(f,
          f.at_ms < 0 ? "step " + std::to_string(n) : "at " + std::to_string(f.at_ms) + " ms");
  }
}

void fault_injector::release() {
  for (auto pid : stopped_)
    ::kill(static_cast<pid_t>(pid), SIGCONT); // a stopped worker cannot be shut down
  stopped_.clear();
}

void fault_injector::call(const std::string& method, const std::string& args_json) {
  auto r = ex_.collective_rpc(method, nlohmann::json::parse(args_json),
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
  if (::kill(static_cast<pid_t>(it->second), sig) != 0)
    what += " failed: " + errno_text(errno);
}

void fault_injector::apply(const scenario_fault& f, const std::string& when) {
  std::string what = when + ": " + to_string(f.what);
  what += f.on_node() ? " node " + std::to_string(f.node) : " rank " + std::to_string(f.rank);
  if (f.what != act::cont && f.what != act::restore_link)
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
    case act::kill_agent: {
      caf::error err;
      if (hosts_ == nullptr)
        err = make_error(errc::invalid_config, "no simulated hosts (cluster.hosts is 0)");
      else if (f.what == act::cut_link)
        err = hosts_->cut_link(f.node);
      else if (f.what == act::restore_link)
        err = hosts_->restore_link(f.node);
      else
        err = hosts_->kill_agent(f.node);
      if (err)
        what += " failed: " + describe(err);
      break;
    }
  }
  log_(what);
  log_lines_.push_back(what);
}

} // namespace cafex
