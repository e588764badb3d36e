// cafex error codes. They travel as caf::error (category "cafex"), so an error raised in a
// worker process reaches the driver and the caller with its code and its text intact.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/make_message.hpp>

namespace cafex {

/// Every failure cafex reports. Messages carried beside the code name the rank, node and
/// cause, and say what to do.
enum class errc : uint8_t {
  none = 0,
  invalid_argument,   ///< a flag, option or method argument is wrong
  invalid_config,     ///< a config or cluster file is malformed
  placement_failed,   ///< the placement group cannot be satisfied
  unknown_method,     ///< collective_rpc named a method the worker does not have
  method_failed,      ///< a worker method threw or returned an error
  timeout,            ///< a deadline passed
  worker_lost,        ///< a worker process died or became unreachable
  node_lost,          ///< a node agent died or became unreachable
  spawn_failed,       ///< a worker process could not be started
  version_mismatch,   ///< peers run different cafex versions
  unauthorized,       ///< a peer presented no or the wrong token
  not_ready,          ///< the executor is not started, or already shut down
  transport_failed,   ///< a channel, collective or rendezvous failed
  model_failed,       ///< the model runner failed
  too_many_in_flight, ///< more steps submitted than max_concurrent_batches allows
};

/// Category atom of cafex errors.
constexpr caf::atom_value error_category = caf::atom("cafex");

const char* to_string(errc x);

/// Makes a cafex error with a human-readable context message.
caf::error make_error(errc code, std::string what);

/// Renders any caf::error for people: "timeout: rank 1 on node a did not answer ...".
/// The message of `err` without its code name ("cannot read ..."), for text shown to a
/// person after its own prefix ("--cluster-config: ..."); describe() for other errors.
std::string message_of(const caf::error& err);

std::string describe(const caf::error& err);

/// The cafex code of `err`, or errc::none when it is not a cafex error.
errc code_of(const caf::error& err);

} // namespace cafex
