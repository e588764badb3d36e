// Ends Gloo's connectFullMesh when it can no longer succeed (used by make_gloo_collective
// only). Gloo connects each pair with a wait of five times the group's timeout and no way
// to cancel it: a rank whose peer published its address and then died (a second loss in
// a recovery's rebuild) would sit there long after the recovery started again, holding
// the next rebuild's calls. The watch blocks on the rendezvous store, under the group's
// generation, for this rank's own "connected" key, and gives the rendezvous up when the
// server fences that generation off (rendezvous_server::fence: a newer rebuild started)
// or the group's deadline passes: it makes the store adapter fail every later call and
// closes the pairs, which wakes Gloo's wait (a closed pair counts as done, and the next
// store call fails).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <caf/error.hpp>
#include <gloo/transport/context.h>
#include <gloo/transport/device.h>

#include "transport/gloo_collective.hpp"
#include "transport/gloo_store.hpp"
#include "transport/rendezvous_client.hpp"

namespace cafex {

/// A Gloo device that forwards to `inner` and keeps the transport context connectFullMesh
/// creates through it, so that a mesh_watch can reach the pairs being connected.
class watched_device final : public gloo::transport::Device {
public:
  explicit watched_device(std::shared_ptr<gloo::transport::Device> inner);

  std::string str() const override;
  const std::string& getPCIBusID() const override;
  int getInterfaceSpeed() const override;
  bool hasGPUDirect() const override;
  std::shared_ptr<gloo::transport::Context> createContext(int rank, int size) override;

  /// The last context created (null before connectFullMesh created its own).
  std::shared_ptr<gloo::transport::Context> created() const;

private:
  std::shared_ptr<gloo::transport::Device> inner_;
  mutable std::mutex mtx_;
  std::shared_ptr<gloo::transport::Context> created_;
};

/// Watches one rank's connectFullMesh (see the top of this file). `opts`, `store` and
/// `dev` must outlive it.
class mesh_watch {
public:
  using clock_type = std::chrono::steady_clock;

  /// Gives up at `deadline` plus the client's reply grace: a peer that never showed up
  /// fails the store's own wait first, with the clearer message.
  mesh_watch(const gloo_options& opts, clock_type::time_point deadline,
             gloo_store_adapter& store, watched_device& dev);
  ~mesh_watch();

  mesh_watch(const mesh_watch&) = delete;
  mesh_watch& operator=(const mesh_watch&) = delete;

  /// Connects the watch's own client (under the group's generation) and starts watching.
  caf::error start();

  /// The rendezvous ended, either way: wakes the watch by setting its key through `main`
  /// (the rank's client, idle by then) and joins it.
  void stop(rendezvous_client& main);

  /// Why the watch gave the rendezvous up; none while it did not.
  caf::error why() const;

private:
  std::chrono::milliseconds time_left() const;
  void run();
  void abort(caf::error err);
  void published();
  void close_pairs();

  const gloo_options& opts_;
  clock_type::time_point deadline_;
  gloo_store_adapter& store_;
  watched_device& dev_;
  std::string done_key_; ///< set by this rank once its rendezvous ended
  std::string own_key_;  ///< Gloo's key for this rank's pair addresses
  std::unique_ptr<rendezvous_client> client_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  mutable std::mutex mtx_; ///< guards why_ and published_
  caf::error why_;
  bool published_ = false; ///< every pair exists (this rank published their addresses)
};

} // namespace cafex
