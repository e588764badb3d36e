#include "netns.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "processes.hpp"

namespace cafex::test {

namespace {

// Signal-safe registry: fixed arrays filled before any signal can need them.
constexpr int max_items = 32;
char ns_names[max_items][40];
std::atomic<int> ns_count{0};
pid_t tracked[max_items];
std::atomic<int> pid_count{0};
const char* ip_path = "/usr/sbin/ip";

void cleanup_all() {
  int np = pid_count.exchange(0);
  for (int i = 0; i < np; ++i)
    if (tracked[i] > 0)
      kill(tracked[i], SIGKILL);  // workers follow their agent (PDEATHSIG)
  for (int i = 0; i < np; ++i)
    if (tracked[i] > 0)
      waitpid(tracked[i], nullptr, 0);
  int nn = ns_count.exchange(0);
  for (int i = nn - 1; i >= 0; --i) {
    pid_t pid = fork();  // fork/exec/waitpid are async-signal-safe
    if (pid == 0) {
      const char* argv[] = {ip_path, "netns", "del", ns_names[i], nullptr};
      execv(ip_path, const_cast<char* const*>(argv));
      _exit(127);
    }
    if (pid > 0)
      waitpid(pid, nullptr, 0);
  }
}

void on_signal(int sig) {
  cleanup_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_handlers() {
  static bool done = false;
  if (done)
    return;
  done = true;
  std::atexit(cleanup_all);
  for (int sig : {SIGINT, SIGTERM, SIGABRT, SIGSEGV, SIGHUP})
    signal(sig, on_signal);
}

void add_ns(const std::string& name) {
  int i = ns_count.load();
  if (i >= max_items)
    throw std::runtime_error("too many namespaces");
  std::strncpy(ns_names[i], name.c_str(), sizeof(ns_names[i]) - 1);
  ns_count.store(i + 1);
}

void sh(const std::vector<std::string>& argv) {
  auto r = run_command(argv, std::chrono::seconds(20));
  if (r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : argv)
      cmd += a + " ";
    throw std::runtime_error("cannot build test hosts: `" + cmd + "` failed (exit "
                             + std::to_string(r.exit_code) + "): " + r.err
                             + " -- multi-node tests need root and iproute2 (ip netns)");
  }
}

} // namespace

netns_hosts::netns_hosts(int n) {
  if (access(ip_path, X_OK) != 0)
    ip_path = "/sbin/ip";
  install_handlers();
  auto prefix = "cfx" + std::to_string(getpid());
  switch_ = prefix + "sw";
  sh({ip_path, "netns", "add", switch_});
  add_ns(switch_);
  sh({ip_path, "-n", switch_, "link", "add", "br0", "type", "bridge"});
  sh({ip_path, "-n", switch_, "link", "set", "br0", "up"});
  for (int i = 0; i < n; ++i) {
    auto name = prefix + "h" + std::to_string(i + 1);
    sh({ip_path, "netns", "add", name});
    add_ns(name);
    names_.push_back(name);
    auto port = "p" + std::to_string(i + 1);
    sh({ip_path, "-n", switch_, "link", "add", port, "type", "veth", "peer", "name", "eth0",
        "netns", name});
    sh({ip_path, "-n", switch_, "link", "set", port, "master", "br0", "up"});
    sh({ip_path, "-n", name, "addr", "add", ip(i) + "/24", "dev", "eth0"});
    sh({ip_path, "-n", name, "link", "set", "eth0", "up"});
    sh({ip_path, "-n", name, "link", "set", "lo", "up"});
  }
}

netns_hosts::~netns_hosts() {
  cleanup();
}

std::vector<std::string> netns_hosts::exec_in(int i, std::vector<std::string> argv) const {
  std::vector<std::string> out{ip_path, "netns", "exec", ns(i)};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

void netns_hosts::track(pid_t pid) {
  int i = pid_count.load();
  if (i < max_items) {
    tracked[i] = pid;
    pid_count.store(i + 1);
  }
}

void netns_hosts::cleanup() {
  cleanup_all();
}

} // namespace cafex::test
