// Test helpers for real processes: run a command capturing its output, find a process's
// children, and wait for conditions with deadlines (never sleeps as synchronisation).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace cafex::test {

struct command_result {
  int exit_code = -1; ///< -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

/// Runs argv with a deadline (SIGKILL on expiry), capturing stdout and stderr.
command_result run_command(const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout = std::chrono::seconds(120));

/// Starts argv in the background with stdout to `out_file` (empty: /dev/null) and
/// stderr to `err_file` (empty: inherited).
pid_t start_background(const std::vector<std::string>& argv, const std::string& out_file = "",
                       const std::string& err_file = "");

/// The whole content of a file ("" when missing).
std::string read_file(const std::string& path);

/// Pids whose parent is `parent` (from /proc).
std::vector<pid_t> children_of(pid_t parent);

/// The child of this process started as a worker with `--rank <rank>`; -1 if none.
pid_t worker_pid(int rank);

/// Pids of every living process whose command line contains `needle`.
std::vector<pid_t> processes_matching(const std::string& needle);

/// TCP ports (IPv4 and IPv6) on which process `pid` listens, from /proc (as `ss -ltnp`).
std::vector<uint16_t> listening_ports(pid_t pid);

/// True when 127.0.0.1:port sends bytes, within `within`, to a peer that sent nothing (as
/// a BASP server does: its handshake comes first).
bool port_speaks_first(uint16_t port,
                       std::chrono::milliseconds within = std::chrono::seconds(1));

/// Open descriptors of `pid`, and its resident memory in KiB (-1 when it is gone).
int open_fds(pid_t pid);
long rss_kib(pid_t pid);
/// Whether the tests (and the programs they start) are built with ASan or TSan, whose
/// allocators hold freed memory back (quarantine): RSS then says nothing about leaks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized_build = true;
#else
constexpr bool sanitized_build = false;
#endif

/// A field of /proc/PID/status in KiB ("RssAnon", "RssShmem", ...), -1 when missing.
long status_kib(pid_t pid, const std::string& field);

/// User + system CPU time of `pid` so far, in clock ticks (-1 when it is gone).
long cpu_ticks(pid_t pid);

/// Waits until every thread of `pid` is stopped (state T): kill(SIGSTOP) returns before
/// the target stops, and on a loaded machine its other threads run on for milliseconds
/// until the one that takes the signal is scheduled.
bool wait_stopped(pid_t pid, std::chrono::milliseconds timeout);

/// Polls `cond` every few ms until it holds or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

/// Makes this process the subreaper of its descendants, so orphans stay visible to it.
void become_subreaper();

/// Reaps every ended child without blocking.
void reap_zombies();

/// The binary path in environment variable `name` (set by ctest), or fails the test.
std::string binary_from_env(const char* name);

} // namespace cafex::test
