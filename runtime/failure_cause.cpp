#include "runtime/failure_cause.hpp"

#include <csignal>
#include <cstdlib>

namespace cafex {

namespace {

std::string signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGINT: return "SIGINT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "signal " + std::to_string(sig);
  }
}

bool parse_int(const std::string& s, int& out) {
  if (s.empty())
    return false;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (*end != '\0')
    return false;
  out = static_cast<int>(v);
  return true;
}

} // namespace

std::string agent_cause_text(bool signaled, int code) {
  return (signaled ? "signal:" : "exit:") + std::to_string(code);
}

failure_cause parse_agent_cause(const std::string& text) {
  failure_cause c;
  if (text.rfind("signal:", 0) == 0 && parse_int(text.substr(7), c.code))
    c.what = failure_cause::kind::killed;
  else if (text.rfind("exit:", 0) == 0 && parse_int(text.substr(5), c.code))
    c.what = failure_cause::kind::exited;
  else if (text == "stopped" || text == "running") {
    c.what = failure_cause::kind::unresponsive;
    c.stopped = text == "stopped";
  }
  return c;
}

std::string describe_cause(const failure_cause& c, std::chrono::milliseconds connection_timeout,
                           const std::string& node_id) {
  switch (c.what) {
    case failure_cause::kind::killed:
      return "killed by signal " + std::to_string(c.code) + " (" + signal_name(c.code) + ")";
    case failure_cause::kind::exited:
      return "exit code " + std::to_string(c.code);
    case failure_cause::kind::unresponsive:
      return "unresponsive: no heartbeat for " + std::to_string(connection_timeout.count())
             + " ms" + (c.stopped ? " (the process is stopped: SIGSTOP or a debugger)" : "");
    case failure_cause::kind::unreachable:
      return "unreachable: link to node " + node_id + " lost";
    default:
      return "connection lost";
  }
}

std::string advice_for(const failure_cause& c) {
  switch (c.what) {
    case failure_cause::kind::killed:
      return "check the node for the OOM killer or an operator kill (dmesg), then shut the "
             "executor down and start it again";
    case failure_cause::kind::exited:
      return "read the worker's log above for the reason, then shut the executor down and "
             "start it again";
    case failure_cause::kind::unresponsive:
      return "the worker is hung or overloaded; inspect it (gdb -p), or raise "
             "executor_options::liveness.connection_timeout, then restart the executor";
    case failure_cause::kind::unreachable:
      return "check the network and the node agent on that node, then restart the executor";
    default:
      return "shut the executor down and start it again";
  }
}

std::string health_state_of(const failure_cause& c) {
  return c.what == failure_cause::kind::unresponsive || c.what == failure_cause::kind::unreachable
           ? "unresponsive"
           : "dead";
}

} // namespace cafex
