// The KV-connector output aggregator (vLLM's KVOutputAggregator): with a KV connector
// every worker reports the requests it finished sending or receiving; a request counts
// as finished only once every expected worker has reported it, possibly over several
// steps.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

class kv_output_aggregator {
public:
  explicit kv_output_aggregator(int expected_workers);

  /// Merges one step's outputs (one per worker). The result is `outputs[output_index]`
  /// (the output rank's tokens) with finished_sending / finished_recving replaced by
  /// the requests every worker has now reported.
  model_runner_output aggregate(std::vector<model_runner_output> outputs,
                                size_t output_index = 0);

  int expected_workers() const { return expected_; }
  /// Requests reported by some but not yet all workers.
  size_t pending() const { return send_remaining_.size() + recv_remaining_.size(); }

private:
  int expected_;
  std::map<std::string, int> send_remaining_;
  std::map<std::string, int> recv_remaining_;
};

} // namespace cafex
