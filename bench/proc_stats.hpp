// What a benchmark reads about processes from /proc: CPU seconds, resident memory and
// the children of a process (the workers a driver started), so the benches that
// compare cafex with its peers count CPU and memory the same way.
#pragma once

#include <sys/types.h>
#include <vector>

namespace cafex::bench {

/// User + system CPU seconds `pid` has used (/proc/PID/stat); 0 once it is gone.
double cpu_seconds(pid_t pid);

/// The sum of cpu_seconds over `pids`.
double cpu_seconds(const std::vector<pid_t>& pids);

/// Resident set of `pid` in KiB (VmRSS of /proc/PID/status); 0 once it is gone.
long rss_kb(pid_t pid);

/// The live processes whose parent is `parent`.
std::vector<pid_t> children(pid_t parent);

} // namespace cafex::bench
