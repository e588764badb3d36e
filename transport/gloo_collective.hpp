// The CPU tensor-parallel collective and pipeline point-to-point channel over Gloo's TCP
// transport. Ranks meet through the driver's rendezvous server under a group prefix, so
// the TP group of every PP stage and every PP neighbour pair share one server.
// Gloo reports failures by throwing; every public call here catches them and returns
// caf::error values that name the group, the rank and what to do.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/collective.hpp"
#include "transport/rendezvous_store.hpp"

namespace gloo {
class Context;
} // namespace gloo

namespace cafex {

struct gloo_options {
  /// The driver's rendezvous server (from distributed_init_method).
  store_address store;
  /// Key prefix of this group on the server, e.g. "pp0/tp" or "pp/0-1". It must be
  /// unique per group *incarnation*: a group rebuilt after a failure needs a new name
  /// (append a generation), or it would read the dead group's addresses.
  std::string group = "tp";
  /// This rank's index in the group and the group's size.
  int rank = 0;
  int size = 1;
  /// The local address Gloo's sockets bind and advertise to peers.
  std::string bind_host = "127.0.0.1";
  /// Bounds the whole connection phase and every later operation.
  std::chrono::milliseconds timeout{30000};
  /// The communicator generation the group belongs to, named in every rendezvous
  /// request: once the server starts a later one (rendezvous_server::fence), a rank still
  /// waiting here for its peers fails at once instead of at `timeout`. 0: never fenced.
  uint32_t generation = 0;
};

/// A connected Gloo group. One operation at a time per direction: all_reduce_sum is
/// not concurrent with itself; a send and a recv may run on two threads at once.
/// After any failure the group is broken (like an aborted NCCL communicator): later
/// calls fail at once and the group must be recreated under a new name.
class gloo_collective final : public collective {
public:
  ~gloo_collective() override;

  int rank() const override { return opts_.rank; }
  int size() const override { return opts_.size; }

  /// Exact element-wise int64 sum across the group, in place.
  caf::error all_reduce_sum(int64_t* data, size_t count) override;
  caf::error all_reduce_sum_f32(float* data, size_t count) override;
  caf::error all_gather(const void* in, void* out, size_t bytes) override;
  caf::error broadcast(void* data, size_t bytes, int root) override;
  const char* transport() const override { return "gloo"; }

  /// Sends `bytes` bytes to `peer`; returns once they are handed to the socket. The
  /// peer must post a recv of the same size and tag.
  caf::error send(const void* data, size_t bytes, int peer, uint32_t tag);

  /// Receives exactly `bytes` bytes from `peer` with `tag` into `data`.
  caf::error recv(void* data, size_t bytes, int peer, uint32_t tag);

  const std::string& group() const { return opts_.group; }

  /// True after a failed operation.
  bool broken() const { return broken_; }

private:
  friend caf::expected<std::unique_ptr<gloo_collective>>
  make_gloo_collective(const gloo_options& opts);

  gloo_collective(gloo_options opts, std::shared_ptr<gloo::Context> ctx);

  /// "gloo group 'tp' rank 1/4".
  std::string who() const;

  /// The all-reduce of both element types.
  template <class T>
  caf::error sum_in_place(T* data, size_t count, const char* type);

  /// Runs a Gloo call, mapping its exceptions to errors and marking the group broken.
  template <class F>
  caf::error guarded(const std::string& what, F&& f);

  gloo_options opts_;
  std::shared_ptr<gloo::Context> ctx_;
  bool broken_ = false;
};

/// Connects rank `opts.rank` of the group in a full mesh. Fails with errc::timeout when
/// a peer does not show up within opts.timeout, errc::transport_failed when the store
/// or a socket fails, errc::invalid_argument for inconsistent options.
caf::expected<std::unique_ptr<gloo_collective>> make_gloo_collective(const gloo_options& opts);

} // namespace cafex
