#include "chaos/simulated_hosts.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "runtime/error.hpp"
#include "runtime/os/process_state.hpp"

namespace cafex {

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string random_token() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 32; ++i)
    out += "0123456789abcdef"[rd() % 16];
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

} // namespace

simulated_hosts::simulated_hosts(int n) : hosts_(n) {}

caf::expected<std::unique_ptr<simulated_hosts>>
simulated_hosts::start(int n, int devices, const std::string& program) {
  if (!can_create_netns())
    return make_error(errc::invalid_config,
                      "cluster.hosts needs root (it creates network namespaces); run "
                      "`cafex chaos` as root, or set cluster.hosts to 0 for an embedded run");
  std::unique_ptr<simulated_hosts> h;
  try {
    h.reset(new simulated_hosts(n));
    h->hosts_.enter(0);
  } catch (const std::exception& e) {
    return make_error(errc::invalid_config, e.what());
  }
  char tmpl[] = "/tmp/cafex-chaos-XXXXXX";
  if (mkdtemp(tmpl) == nullptr)
    return make_error(errc::invalid_config, "cannot create a temporary directory in /tmp");
  h->dir_ = tmpl;
  h->token_ = random_token();
  std::ofstream(h->dir_ + "/token") << h->token_ << "\n";
  for (int i = 0; i < n; ++i)
    if (auto err = h->start_agent(i, devices, program))
      return err;
  return h;
}

simulated_hosts::~simulated_hosts() {
  agents_.clear(); // SIGTERM, then SIGKILL; workers follow their agent
  hosts_.cleanup();
  if (!dir_.empty()) {
    for (const char* f : {"/token"})
      std::remove((dir_ + f).c_str());
    for (size_t i = 0; i < addrs_.size(); ++i) {
      std::remove((dir_ + "/agent" + std::to_string(i) + ".out").c_str());
      std::remove((dir_ + "/agent" + std::to_string(i) + ".err").c_str());
    }
    std::remove(dir_.c_str());
  }
}

caf::error simulated_hosts::start_agent(int node, int devices, const std::string& program) {
  auto out = dir_ + "/agent" + std::to_string(node) + ".out";
  auto err = dir_ + "/agent" + std::to_string(node) + ".err";
  auto listen = hosts_.ip(node) + ":7100";
  std::string cmd = "exec";
  for (const auto& a : hosts_.exec_in(node, {program, "node", "--listen", listen, "--devices",
                                             std::to_string(devices), "--token-file",
                                             dir_ + "/token", "--log-level", "warn"}))
    cmd += " " + shell_quote(a);
  cmd += " >" + shell_quote(out) + " 2>" + shell_quote(err);
  auto child = child_process::spawn({"/bin/sh", "-c", cmd});
  if (!child)
    return child.error();
  hosts_.track(child->pid());
  agents_.push_back(std::move(*child));
  addrs_.push_back(listen);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (read_all(out).find("listening") == std::string::npos) {
    if (!agents_.back().running() || agents_.back().try_wait())
      return make_error(errc::spawn_failed, "the node agent of simulated host "
                                              + std::to_string(node)
                                              + " exited: " + read_all(err));
    if (std::chrono::steady_clock::now() > deadline)
      return make_error(errc::timeout, "the node agent of simulated host "
                                         + std::to_string(node)
                                         + " did not listen within 10 s: " + read_all(err));
    std::this_thread::sleep_for(std::chrono::milliseconds(10)); // polling its output file
  }
  return caf::none;
}

cluster_options simulated_hosts::cluster() const {
  cluster_options c;
  c.nodes = addrs_;
  c.host_ip = hosts_.ip(0);
  c.security.token = token_;
  return c;
}

caf::error simulated_hosts::check(int node) const {
  if (node < 0 || static_cast<size_t>(node) >= agents_.size())
    return make_error(errc::invalid_argument,
                      "there is no simulated host " + std::to_string(node));
  return caf::none;
}

caf::error simulated_hosts::cut_link(int node) {
  if (auto err = check(node))
    return err;
  try {
    hosts_.set_link(node, false);
  } catch (const std::exception& e) {
    return make_error(errc::transport_failed, e.what());
  }
  return caf::none;
}

caf::error simulated_hosts::restore_link(int node) {
  if (auto err = check(node))
    return err;
  try {
    hosts_.set_link(node, true);
  } catch (const std::exception& e) {
    return make_error(errc::transport_failed, e.what());
  }
  return caf::none;
}

caf::error simulated_hosts::kill_agent(int node, int signal) {
  if (auto err = check(node))
    return err;
  agents_[static_cast<size_t>(node)].signal(signal);
  return caf::none;
}

caf::error simulated_hosts::stop_agent(int node) {
  if (auto err = kill_agent(node, SIGSTOP))
    return err;
  // kill() returns before the agent stops; the fault is in place only once it has.
  constexpr std::chrono::milliseconds stop_timeout{2000};
  auto pid = agents_[static_cast<size_t>(node)].pid();
  if (!wait_stopped(pid, stop_timeout))
    return make_error(errc::timeout, "node agent of host " + std::to_string(node) + " (pid "
                                       + std::to_string(pid) + ") did not stop within "
                                       + std::to_string(stop_timeout.count()) + " ms");
  return caf::none;
}

caf::error simulated_hosts::continue_agent(int node) {
  return kill_agent(node, SIGCONT);
}

} // namespace cafex
