// The dataflow's messages on the same-node shared-memory path: a step command (driver ->
// stage 0), a stage hand-off with its tensor bytes inline (stage k -> k+1), and a report
// (any rank -> driver). Control structs use CAF's binary format; tensor bytes are copied
// straight into the ring.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/model_runner.hpp"
#include "runtime/dataflow/scheduler_output.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

/// Marks the sequence numbers of steps that a caller runs on its own lane (the driver's
/// direct lane): their output rank rings the lane's doorbell, not the driver's, and the
/// other ranks mark the board instead of reporting progress.
inline constexpr uint64_t direct_seq_bit = uint64_t{1} << 63;

inline bool is_direct_seq(uint64_t seq) {
  return (seq & direct_seq_bit) != 0;
}

/// Serializes a scheduler output once; the same bytes go to every stage-0 rank.
std::vector<char> encode_scheduler_output(const scheduler_output& step);
/// The same into `into`, whose capacity is reused (the direct lane's per-step buffer).
void encode_scheduler_output(const scheduler_output& step, std::vector<char>& into);

caf::error write_command(shm_ring& ring, uint64_t seq, const std::vector<char>& step_bytes,
                         std::chrono::milliseconds timeout);

caf::error write_handoff(shm_ring& ring, uint64_t seq, const std::vector<char>& step_bytes,
                         const intermediate_tensors& t, std::chrono::milliseconds timeout);

enum class report_kind : uint8_t { result = 0, progress = 1, failure = 2 };

caf::error write_report(shm_ring& ring, shm_doorbell* bell, uint64_t seq, int32_t rank,
                        report_kind kind, const model_runner_output* out,
                        const caf::error* err, std::chrono::milliseconds timeout);

/// A decoded command or hand-off.
struct step_message {
  uint64_t seq = 0;
  std::vector<char> step_bytes; ///< passed on unchanged to the next stage
  scheduler_output step;
  bool has_tensors = false;
  intermediate_tensors tensors;
};

caf::expected<step_message> read_step_message(const std::vector<char>& bytes, bool handoff);

struct report_message {
  uint64_t seq = 0;
  int32_t rank = 0;
  report_kind kind = report_kind::progress;
  model_runner_output output;
  caf::error error;
};

caf::expected<report_message> read_report(const std::vector<char>& bytes);

/// collective_rpc on the direct lane: a method call (caller -> one rank) and its reply
/// (the result's JSON text, or the error), tagged with the call's id.
caf::error write_call(shm_ring& ring, uint64_t id, const std::string& method,
                      const std::string& args, std::chrono::milliseconds timeout);

struct call_message {
  uint64_t id = 0;
  std::string method;
  std::string args;
};

caf::expected<call_message> read_call(const std::vector<char>& bytes);

caf::error write_reply(shm_ring& ring, shm_doorbell* bell, uint64_t id, int32_t rank,
                       const caf::expected<std::string>& result,
                       std::chrono::milliseconds timeout);

struct reply_message {
  uint64_t id = 0;
  int32_t rank = 0;
  caf::expected<std::string> result{std::string{}};
};

caf::expected<reply_message> read_reply(const std::vector<char>& bytes);

} // namespace cafex
