// Latency percentiles for summaries and benchmarks.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace cafex {

/// The p-th percentile (0..100) by nearest rank; 0 for no samples.
inline double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(xs.size())));
  rank = std::min(std::max<size_t>(rank, 1), xs.size());
  return xs[rank - 1];
}

} // namespace cafex
