#include "actors/system_config.hpp"

#include <caf/io/middleman.hpp>

#include "actors/driver_protocol.hpp"
#include "actors/dummy_driver_protocol.hpp"
#include "actors/messages.hpp"
#include "actors/node_agent_protocol.hpp"
#include "actors/worker_protocol.hpp"
#include "runtime/error.hpp"
#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

system_config::system_config(const liveness_options& live) {
  load<caf::io::middleman>();
  add_message_type<new_request>("cafex::new_request");
  add_message_type<std::vector<new_request>>("std::vector<cafex::new_request>");
  add_message_type<cached_request>("cafex::cached_request");
  add_message_type<std::vector<cached_request>>("std::vector<cafex::cached_request>");
  add_message_type<sampling_params>("cafex::sampling_params");
  add_message_type<token_logprobs>("cafex::token_logprobs");
  add_message_type<std::vector<token_logprobs>>("std::vector<cafex::token_logprobs>");
  add_message_type<scheduler_output>("cafex::scheduler_output");
  add_message_type<model_runner_output>("cafex::model_runner_output");
  add_message_type<node_info>("cafex::node_info");
  add_message_type<spawn_request>("cafex::spawn_request");
  add_message_type<bundle_claim>("cafex::bundle_claim");
  add_message_type<std::vector<bundle_claim>>("std::vector<cafex::bundle_claim>");
  add_message_type<std::vector<int64_t>>("std::vector<int64_t>");
  add_message_type<failure_cause>("cafex::failure_cause");
  add_message_type<worker_health>("cafex::worker_health");
  add_message_type<std::vector<worker_health>>("std::vector<cafex::worker_health>");
  add_message_type<rpc_options>("cafex::rpc_options");
  add_message_type<tensor_desc>("cafex::tensor_desc");
  add_message_type<dag_config>("cafex::dag_config");
  add_message_type<worker_actor>("cafex::worker_actor");
  add_message_type<std::vector<worker_actor>>("std::vector<cafex::worker_actor>");
  add_message_type<node_agent_actor>("cafex::node_agent_actor");
  add_message_type<std::vector<node_agent_actor>>("std::vector<cafex::node_agent_actor>");
  add_message_type<dummy_driver_actor>("cafex::dummy_driver_actor");
  add_message_type<std::vector<int32_t>>("std::vector<int32_t>");
  add_error_category(error_category,
                     [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                       std::string out = to_string(static_cast<errc>(code));
                       if (ctx.match_elements<std::string>())
                         out += ": " + ctx.get_as<std::string>(0);
                       return out;
                     });
  // Measured (CAF-NOTES.md): no polling spin and no middleman worker pool halve the
  // cross-process round trip and cut idle CPU.
  set("work-stealing.moderate-poll-attempts", size_t{0});
  set("middleman.workers", size_t{0});
  // An idle scheduler thread sleeps on a condition variable that a new job signals; its
  // timeout (10 ms by default) only paces work stealing. 100 ms cuts the idle wake-ups
  // (issue 19: a process with no step running stays under 1% of a core).
  set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds{100}});
  // Heartbeats are off by default in 0.17: without them a stopped or partitioned peer
  // is never noticed.
  set("middleman.heartbeat-interval", caf::timespan{live.heartbeat_interval});
  set("middleman.connection-timeout", caf::timespan{live.connection_timeout});
  set("logger.verbosity", caf::atom("quiet"));
}

} // namespace cafex
