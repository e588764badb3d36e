#include "runtime/failure_cause.hpp"

#include <csignal>

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

} // namespace

failure_cause process_ended(bool signaled, int code) {
  failure_cause c;
  c.what = signaled ? failure_cause::kind::killed : failure_cause::kind::exited;
  c.code = code;
  return c;
}

failure_cause still_running(bool stopped) {
  failure_cause c;
  c.what = failure_cause::kind::unresponsive;
  c.stopped = stopped;
  return c;
}

std::string describe_cause(const failure_cause& c,
                           std::chrono::milliseconds connection_timeout,
                           const std::string& node_id) {
  switch (c.what) {
    case failure_cause::kind::killed:
      return "killed by signal " + std::to_string(c.code) + " (" + signal_name(c.code) + ")";
    case failure_cause::kind::exited: return "exit code " + std::to_string(c.code);
    case failure_cause::kind::unresponsive:
      return "unresponsive: no heartbeat for " + std::to_string(connection_timeout.count())
             + " ms" + (c.stopped ? " (the process is stopped: SIGSTOP or a debugger)" : "");
    case failure_cause::kind::unreachable:
      return "unreachable: link to node " + node_id + " lost";
    case failure_cause::kind::link_dropped: return "link dropped";
    case failure_cause::kind::none: return "alive";
    default: return "connection lost";
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
    default: return "shut the executor down and start it again";
  }
}

bool node_suspect(const failure_cause& c) {
  return c.what == failure_cause::kind::unreachable
         || (c.what == failure_cause::kind::unknown && c.link_unreachable);
}

} // namespace cafex
