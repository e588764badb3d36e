#include "chaos/netns_hosts.hpp"
#include "runtime/os/errno_text.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace cafex {

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
      kill(tracked[i], SIGKILL); // workers follow their agent (PDEATHSIG)
  for (int i = 0; i < np; ++i)
    if (tracked[i] > 0)
      waitpid(tracked[i], nullptr, 0);
  int nn = ns_count.exchange(0);
  for (int i = nn - 1; i >= 0; --i) {
    pid_t pid = fork(); // fork/exec/waitpid are async-signal-safe
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
  for (int sig : {SIGINT, SIGTERM, SIGABRT, SIGSEGV, SIGHUP, SIGPIPE})
    signal(sig, on_signal);
}

void add_ns(const std::string& name) {
  int i = ns_count.load();
  if (i >= max_items)
    throw std::runtime_error("too many namespaces");
  std::strncpy(ns_names[i], name.c_str(), sizeof(ns_names[i]) - 1);
  ns_count.store(i + 1);
}

struct command_result {
  int exit_code = -1;
  std::string err;
};

/// Runs argv (an `ip` command: short-lived) capturing stderr; SIGKILL after `timeout`.
command_result run_captured(const std::vector<std::string>& argv,
                            std::chrono::milliseconds timeout) {
  command_result r;
  int fds[2];
  if (pipe(fds) != 0)
    return r;
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv)
    cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
      dup2(null, 1);
    close(fds[0]);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return r;
  }
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool done = false;
  char buf[512];
  while (!done) {
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0)
      r.err.append(buf, static_cast<size_t>(n));
    done = waitpid(pid, &status, WNOHANG) == pid;
    if (!done && std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    if (!done) // polling a child that runs a few ms, bounded by the deadline
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0)
    r.err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  r.exit_code = done && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void sh(const std::vector<std::string>& argv) {
  auto r = run_captured(argv, std::chrono::seconds(20));
  if (r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : argv)
      cmd += a + " ";
    throw std::runtime_error("cannot build simulated hosts: `" + cmd + "` failed (exit "
                             + std::to_string(r.exit_code) + "): " + r.err
                             + " -- network namespaces need root and iproute2 (ip netns)");
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

void netns_hosts::set_link(int i, bool up) const {
  sh({ip_path, "-n", switch_, "link", "set", "p" + std::to_string(i + 1), up ? "up" : "down"});
}

void netns_hosts::enter(int i) const {
  auto path = "/var/run/netns/" + ns(i);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("cannot open " + path + ": " + errno_text(errno));
  int rc = setns(fd, CLONE_NEWNET);
  int e = errno;
  close(fd);
  if (rc != 0)
    throw std::runtime_error("cannot enter network namespace " + ns(i) + ": " + errno_text(e));
}

bool can_create_netns() {
  return geteuid() == 0;
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

} // namespace cafex
