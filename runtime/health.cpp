#include "runtime/health.hpp"

namespace cafex {

const char* to_string(health_state s) {
  switch (s) {
    case health_state::healthy: return "healthy";
    case health_state::unresponsive: return "unresponsive";
    case health_state::dead: return "dead";
    case health_state::restarting: return "restarting";
    case health_state::rebuilding: return "rebuilding";
  }
  return "unknown";
}

health_state health_state_of(const failure_cause& c) {
  switch (c.what) {
    case failure_cause::kind::unresponsive:
    case failure_cause::kind::unreachable:
    case failure_cause::kind::link_dropped: return health_state::unresponsive;
    default: return health_state::dead;
  }
}

} // namespace cafex
