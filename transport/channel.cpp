#include "transport/channel.hpp"

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"

namespace cafex {

namespace {

/// A Gloo group of two: rank 0 upstream, rank 1 downstream.
class gloo_channel final : public p2p_channel {
public:
  gloo_channel(std::unique_ptr<gloo_collective> g, bool upstream)
    : group_(std::move(g)), peer_(upstream ? 1 : 0) {
  }
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

} // namespace

caf::expected<channel_type> parse_channel_type(const std::string& text) {
  if (text == "auto")
    return channel_type::automatic;
  if (text == "nccl")
    return channel_type::nccl;
  if (text == "gloo")
    return channel_type::gloo;
  if (text == "shm")
    return channel_type::shm;
  return make_error(errc::invalid_argument, "invalid channel type '" + text
                                              + "'; valid values are auto, nccl, gloo and shm");
}

const char* to_string(channel_type t) {
  switch (t) {
    case channel_type::automatic: return "auto";
    case channel_type::nccl: return "nccl";
    case channel_type::gloo: return "gloo";
    case channel_type::shm: return "shm";
  }
  return "?";
}

channel_type resolve_channel_type(channel_type requested, const std::string& device) {
  if (requested != channel_type::automatic)
    return requested;
  return device == "cuda" ? channel_type::nccl : channel_type::gloo;
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
    case channel_type::nccl:
      return make_error(errc::invalid_argument,
                        "channel type nccl needs GPU workers (--device cuda) and a CUDA build");
    case channel_type::shm:
      return make_error(errc::invalid_argument,
                        "channel type shm is not available for tensors yet; use gloo or auto");
    case channel_type::automatic:
      break;
  }
  return make_error(errc::invalid_argument, "resolve the channel type before opening it");
}

} // namespace cafex
