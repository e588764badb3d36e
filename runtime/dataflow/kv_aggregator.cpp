#include "runtime/dataflow/kv_aggregator.hpp"

namespace cafex {

namespace {

void count(std::map<std::string, int>& remaining, int expected,
           const std::vector<std::string>& reported, std::vector<std::string>& finished) {
  for (const auto& id : reported) {
    auto [it, inserted] = remaining.emplace(id, expected);
    if (--it->second == 0) {
      finished.push_back(id);
      remaining.erase(it);
    }
  }
}

} // namespace

kv_output_aggregator::kv_output_aggregator(int expected_workers)
  : expected_(expected_workers < 1 ? 1 : expected_workers) {}

model_runner_output kv_output_aggregator::aggregate(std::vector<model_runner_output> outputs,
                                                    size_t output_index) {
  std::vector<std::string> sending, recving;
  for (const auto& out : outputs) {
    count(send_remaining_, expected_, out.finished_sending, sending);
    count(recv_remaining_, expected_, out.finished_recving, recving);
  }
  model_runner_output result;
  if (output_index < outputs.size())
    result = std::move(outputs[output_index]);
  result.finished_sending = std::move(sending);
  result.finished_recving = std::move(recving);
  return result;
}

} // namespace cafex
