#include "transport/channel.hpp"

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/tcp_collective.hpp"
#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "transport/nccl_collective.hpp"
#endif

namespace cafex {

namespace {

/// A Gloo group of two: rank 0 upstream, rank 1 downstream.
class gloo_channel final : public p2p_channel {
public:
  gloo_channel(std::unique_ptr<gloo_collective> g, bool upstream)
    : group_(std::move(g)), peer_(upstream ? 1 : 0) {}
  caf::error send(const void* data, size_t bytes, uint64_t tag) override {
    return group_->send(data, bytes, peer_, static_cast<uint32_t>(tag));
  }
  caf::error recv(void* data, size_t bytes, uint64_t tag) override {
    return group_->recv(data, bytes, peer_, static_cast<uint32_t>(tag));
  }
  const char* kind() const override { return "gloo"; }

private:
  std::unique_ptr<gloo_collective> group_;
  int peer_;
};

/// A TCP-mesh group of two: each message is a (tag, size) header and the bytes. The
/// link is a byte stream, so a receiver that expects another tag or size than the next
/// message carries fails (the stages lost step order) instead of reading wrong bytes.
class tcp_channel final : public p2p_channel {
public:
  tcp_channel(std::unique_ptr<tcp_collective> g, bool upstream)
    : group_(std::move(g)), peer_(upstream ? 1 : 0) {}
  caf::error send(const void* data, size_t bytes, uint64_t tag) override {
    const uint64_t header[2] = {tag, bytes};
    if (auto err = group_->send(header, sizeof header, peer_))
      return err;
    return bytes == 0 ? caf::none : group_->send(data, bytes, peer_);
  }
  caf::error recv(void* data, size_t bytes, uint64_t tag) override {
    uint64_t header[2] = {0, 0};
    if (auto err = group_->recv(header, sizeof header, peer_))
      return err;
    if (header[0] != tag || header[1] != bytes)
      return make_error(errc::transport_failed,
                        "tcp channel: expected message " + std::to_string(tag) + " of "
                          + std::to_string(bytes) + " bytes, the peer sent message "
                          + std::to_string(header[0]) + " of " + std::to_string(header[1])
                          + " bytes: the stages are out of step (rebuild the dataflow)");
    return bytes == 0 ? caf::none : group_->recv(data, bytes, peer_);
  }
  const char* kind() const override { return "tcp"; }

private:
  std::unique_ptr<tcp_collective> group_;
  int peer_;
};

#ifdef CAFEX_HAVE_CUDA
/// NCCL between the two stages' GPUs. The model hands over host tensors, so each side
/// stages them through a device buffer it keeps for the next step.
class nccl_channel final : public p2p_channel {
public:
  nccl_channel(std::unique_ptr<nccl_collective> g, bool upstream)
    : group_(std::move(g)), peer_(upstream ? 1 : 0) {}
  caf::error send(const void* data, size_t bytes, uint64_t) override {
    if (auto err = staging_.reserve(bytes))
      return err;
    if (auto err = CAFEX_CHECK(
          cudaMemcpy(staging_.data(), data, bytes, cudaMemcpyHostToDevice)))
      return err;
    return group_->send(staging_.data(), bytes, peer_);
  }
  caf::error recv(void* data, size_t bytes, uint64_t) override {
    if (auto err = staging_.reserve(bytes))
      return err;
    if (auto err = group_->recv(staging_.data(), bytes, peer_))
      return err;
    return CAFEX_CHECK(cudaMemcpy(data, staging_.data(), bytes, cudaMemcpyDeviceToHost));
  }
  const char* kind() const override { return "nccl"; }

private:
  std::unique_ptr<nccl_collective> group_;
  device_buffer staging_;
  int peer_;
};
#endif

} // namespace

caf::expected<channel_type> parse_channel_type(const std::string& text) {
  if (text == "auto")
    return channel_type::automatic;
  if (text == "nccl")
    return channel_type::nccl;
  if (text == "gloo")
    return channel_type::gloo;
  if (text == "tcp")
    return channel_type::tcp;
  if (text == "shm")
    return channel_type::shm;
  return make_error(errc::invalid_argument,
                    "invalid channel type '" + text
                      + "'; valid values are auto, nccl, tcp, gloo and shm");
}

const char* to_string(channel_type t) {
  switch (t) {
    case channel_type::automatic: return "auto";
    case channel_type::nccl: return "nccl";
    case channel_type::gloo: return "gloo";
    case channel_type::tcp: return "tcp";
    case channel_type::shm: return "shm";
  }
  return "?";
}

channel_type resolve_channel_type(channel_type requested, const std::string& device) {
  if (requested != channel_type::automatic)
    return requested;
  return device == "cuda" ? channel_type::nccl : channel_type::tcp;
}

caf::expected<std::unique_ptr<p2p_channel>> open_channel(const channel_options& opts) {
  switch (opts.type) {
    case channel_type::gloo: {
      auto addr = parse_store_url(opts.store_url);
      if (!addr)
        return addr.error();
      gloo_options go;
      go.store = *addr;
      go.group = opts.group;
      go.rank = opts.upstream ? 0 : 1;
      go.size = 2;
      go.bind_host = opts.bind_host;
      go.timeout = opts.timeout;
      auto g = make_gloo_collective(go);
      if (!g)
        return g.error();
      return std::unique_ptr<p2p_channel>(new gloo_channel(std::move(*g), opts.upstream));
    }
    case channel_type::tcp: {
      auto addr = parse_store_url(opts.store_url);
      if (!addr)
        return addr.error();
      auto store = rendezvous_client::connect(*addr, opts.timeout);
      if (!store)
        return store.error();
      tcp_collective_options to;
      to.group = opts.group;
      to.rank = opts.upstream ? 0 : 1;
      to.size = 2;
      to.bind_host = opts.bind_host;
      to.timeout = opts.timeout;
      auto g = make_tcp_collective(**store, to);
      if (!g)
        return g.error();
      return std::unique_ptr<p2p_channel>(new tcp_channel(std::move(*g), opts.upstream));
    }
    case channel_type::nccl: {
#ifdef CAFEX_HAVE_CUDA
      auto addr = parse_store_url(opts.store_url);
      if (!addr)
        return addr.error();
      auto store = rendezvous_client::connect(*addr, opts.timeout);
      if (!store)
        return store.error();
      nccl_options no;
      no.group = "nccl/" + opts.group;
      no.rank = opts.upstream ? 0 : 1;
      no.size = 2;
      no.timeout = opts.timeout;
      no.op_timeout = opts.timeout;
      auto g = make_nccl_collective(**store, no);
      if (!g)
        return g.error();
      return std::unique_ptr<p2p_channel>(new nccl_channel(std::move(*g), opts.upstream));
#else
      return make_error(
        errc::invalid_argument,
        "channel type nccl needs GPU workers (--device cuda) and a CUDA build");
#endif
    }
    case channel_type::shm:
      return make_error(errc::invalid_argument,
                        "shm links are rings set up by the driver (driver_shm_path), not "
                        "point-to-point channels");
    case channel_type::automatic: break;
  }
  return make_error(errc::invalid_argument, "resolve the channel type before opening it");
}

} // namespace cafex
