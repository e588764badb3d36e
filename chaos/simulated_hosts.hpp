// `cafex chaos` with cluster.hosts = N: N simulated hosts (network namespaces), each
// running a `cafex node` agent, with the calling process (the driver) moved into host 0,
// as a vLLM driver shares its node with rank 0 (placement requires the driver's node to
// hold a bundle). Node-level faults (cut_link, restore_link, kill_agent, stop_agent,
// continue_agent) act on these hosts; hit node 1 and up to spare the driver. Root only; everything is removed when the
// object goes away, and at exit or on a fatal signal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "chaos/runner.hpp"
#include "chaos/netns_hosts.hpp"
#include "runtime/os/child_process.hpp"

namespace cafex {

class simulated_hosts final : public host_faults {
public:
  /// Builds the hosts and starts one agent per host with `devices` logical devices
  /// (program: the `cafex` binary), after moving this process into host 0's namespace.
  /// Call before any thread starts (setns moves only the calling thread).
  static caf::expected<std::unique_ptr<simulated_hosts>> start(int n, int devices,
                                                               const std::string& program);
  ~simulated_hosts() override;

  /// The executor's view: the agents' addresses, the token, the driver's IP.
  cluster_options cluster() const;

  caf::error cut_link(int node) override;
  caf::error restore_link(int node) override;
  caf::error kill_agent(int node, int signal) override;
  caf::error stop_agent(int node) override;
  caf::error continue_agent(int node) override;

private:
  simulated_hosts(int n);
  caf::error start_agent(int node, int devices, const std::string& program);
  caf::error check(int node) const;

  netns_hosts hosts_; ///< host 0 also holds the driver
  std::string dir_;
  std::string token_;
  std::vector<child_process> agents_;
  std::vector<std::string> addrs_;
};

} // namespace cafex
