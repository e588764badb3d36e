#include "bench/proc_stats.hpp"

#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace cafex::bench {

namespace {

/// The fields of /proc/PID/stat after the command name (which may hold spaces and
/// parentheses), field 3 (state) first; empty once the process is gone.
std::string stat_tail(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  auto close = line.rfind(')');
  return close == std::string::npos || close + 2 > line.size() ? std::string{}
                                                               : line.substr(close + 2);
}

} // namespace

double cpu_seconds(pid_t pid) {
  std::istringstream rest(stat_tail(pid));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i)
    if (i == 14 || i == 15) // utime, stime
      ticks += std::stod(field);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double cpu_seconds(const std::vector<pid_t>& pids) {
  double sum = 0;
  for (auto pid : pids)
    sum += cpu_seconds(pid);
  return sum;
}

long rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return 0;
}

std::vector<pid_t> children(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (auto* e = d ? readdir(d) : nullptr) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    std::istringstream rest(stat_tail(static_cast<pid_t>(pid)));
    char state = 0;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent)
      out.push_back(static_cast<pid_t>(pid));
  }
  if (d)
    closedir(d);
  return out;
}

} // namespace cafex::bench
