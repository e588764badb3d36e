// What bench_rpc_roundtrip and bench_caf_pingpong print beside their numbers: latency
// summaries with the mean, the CPU model, usable cores and the load average.
#pragma once

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sched.h>
#include <string>
#include <vector>

#include "runtime/stats.hpp"

namespace cafex::bench {

/// Latency samples in microseconds and their summary (nearest-rank percentiles).
struct latency_stats {
  std::vector<double> samples_us;
  double p50 = 0;
  double p99 = 0;
  double mean = 0;
  double min = 0;
};

inline latency_stats latency_of(std::vector<double> samples_us) {
  latency_stats s;
  s.samples_us = std::move(samples_us);
  if (s.samples_us.empty())
    return s;
  s.p50 = percentile(s.samples_us, 50);
  s.p99 = percentile(s.samples_us, 99);
  s.mean = std::accumulate(s.samples_us.begin(), s.samples_us.end(), 0.0)
           / static_cast<double>(s.samples_us.size());
  s.min = *std::min_element(s.samples_us.begin(), s.samples_us.end());
  return s;
}

/// "AMD EPYC (2 cores usable)", from /proc/cpuinfo and the affinity mask.
inline std::string machine_summary() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        model = line.substr(colon + 2);
      break;
    }
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = 0;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0)
    cores = CPU_COUNT(&set);
  return model + " (" + std::to_string(cores) + " cores usable)";
}

/// The 1-minute load average from /proc/loadavg (-1 if unreadable).
inline double load_average_1m() {
  std::ifstream in("/proc/loadavg");
  double x = -1;
  in >> x;
  return in ? x : -1;
}

} // namespace cafex::bench
