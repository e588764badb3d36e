// Point-to-point channels between pipeline neighbours: the bytes of intermediate tensors
// travel here while CAF carries their descriptors. Implementations: cafex's TCP mesh (CPU),
// Gloo (CPU, TCP), NCCL (GPU, built with CUDA) and an in-process fake for tests.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace cafex {

/// One direction-agnostic link between an upstream and a downstream stage worker.
/// `send` and `recv` with the same tag match; one side sends, the other receives.
class p2p_channel {
public:
  virtual ~p2p_channel() = default;
  virtual caf::error send(const void* data, size_t bytes, uint64_t tag) = 0;
  virtual caf::error recv(void* data, size_t bytes, uint64_t tag) = 0;
  /// "tcp", "gloo", "nccl", "fake".
  virtual const char* kind() const = 0;
};

/// The seed's VLLM_USE_RAY_COMPILED_DAG_CHANNEL_TYPE, plus tcp (cafex's TCP mesh) and gloo.
enum class channel_type { automatic, nccl, gloo, shm, tcp };

/// Parses auto|nccl|tcp|gloo|shm; anything else is an error that lists the valid values.
caf::expected<channel_type> parse_channel_type(const std::string& text);
const char* to_string(channel_type t);

/// What `auto` means for a device: NCCL for GPU tensors, the TCP mesh for CPU tensors
/// (the driver still takes shared memory when every rank is on one node).
channel_type resolve_channel_type(channel_type requested, const std::string& device);

/// Where a channel meets its peer.
struct channel_options {
  channel_type type = channel_type::gloo;
  std::string store_url; ///< distributed_init_method of the run
  std::string group;     ///< unique per link and per dataflow generation
  bool upstream = true;  ///< the sending side (rank 0 of the pair)
  std::string bind_host = "127.0.0.1";
  std::chrono::milliseconds timeout{30000};
};

/// Connects one side of a link (blocks until the peer side connects or the deadline).
caf::expected<std::unique_ptr<p2p_channel>> open_channel(const channel_options& opts);

} // namespace cafex
