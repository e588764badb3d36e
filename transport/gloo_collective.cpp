#include "transport/gloo_collective.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

#include "runtime/error.hpp"
#include "transport/gloo_mesh_watch.hpp"
#include "transport/gloo_store.hpp"
#include "transport/rendezvous_client.hpp"

namespace cafex {

namespace {

using clock_type = std::chrono::steady_clock;

// Slot prefix for point-to-point traffic, away from Gloo's collectives (0x01..0x08).
constexpr uint8_t p2p_slot_prefix = 0x40;

// The text of a cafex error without its code name, to re-wrap it with more context.
std::string context_text(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return describe(err);
}

// Gloo has one exception type for I/O; its text is the only way to tell a deadline from
// a broken socket.
errc classify(const std::string& what) {
  std::string lower(what);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("timed out") != std::string::npos
      || lower.find("timeout") != std::string::npos)
    return errc::timeout;
  return errc::transport_failed;
}

/// Gloo's reduce function for element type T: out = a + b, element-wise.
template <class T>
void sum_of(void* out, const void* a, const void* b, size_t n) {
  auto o = static_cast<T*>(out);
  auto x = static_cast<const T*>(a);
  auto y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i)
    o[i] = x[i] + y[i];
}

caf::error validate(const gloo_options& o) {
  auto bad = [&](const std::string& why) {
    return make_error(errc::invalid_argument, "gloo group '" + o.group + "': " + why);
  };
  if (o.size < 1)
    return bad("size must be at least 1, got " + std::to_string(o.size));
  if (o.rank < 0 || o.rank >= o.size)
    return bad("rank " + std::to_string(o.rank) + " is outside 0.."
               + std::to_string(o.size - 1));
  if (o.group.empty())
    return bad("the group name is empty; name it after the stage, e.g. 'pp0/tp'");
  if (o.timeout.count() <= 0)
    return bad("the timeout must be positive");
  if (o.store.port == 0)
    return bad("the rendezvous store port is 0; pass the driver's distributed_init_method");
  return caf::none;
}

} // namespace

gloo_collective::gloo_collective(gloo_options opts, std::shared_ptr<gloo::Context> ctx)
  : opts_(std::move(opts)), ctx_(std::move(ctx)) {}

gloo_collective::~gloo_collective() = default;

std::string gloo_collective::who() const {
  return "gloo group '" + opts_.group + "' rank " + std::to_string(opts_.rank) + "/"
         + std::to_string(opts_.size);
}

template <class F>
caf::error gloo_collective::guarded(const std::string& what, F&& f) {
  if (broken_)
    return make_error(errc::transport_failed,
                      who() + ": " + what
                        + " refused: the group failed earlier; recreate it under a new name");
  try {
    f();
    return caf::none;
  } catch (const std::exception& e) {
    broken_ = true;
    return make_error(classify(e.what()),
                      who() + ": " + what + " failed: " + e.what()
                        + "; a peer may have died or stalled, recreate the group");
  } catch (...) {
    broken_ = true;
    return make_error(errc::transport_failed,
                      who() + ": " + what + " failed with an unknown exception");
  }
}

template <class T>
caf::error gloo_collective::sum_in_place(T* data, size_t count, const char* type) {
  if (opts_.size == 1 || count == 0)
    return caf::none;
  return guarded("all_reduce_sum of " + std::to_string(count) + " " + type, [&] {
    gloo::AllreduceOptions o(ctx_);
    o.setOutput(data, count);
    o.setReduceFunction(&sum_of<T>);
    o.setTimeout(opts_.timeout);
    gloo::allreduce(o);
  });
}

caf::error gloo_collective::all_reduce_sum(int64_t* data, size_t count) {
  return sum_in_place(data, count, "int64");
}

caf::error gloo_collective::all_reduce_sum_f32(float* data, size_t count) {
  return sum_in_place(data, count, "float32");
}

caf::error gloo_collective::all_gather(const void* in, void* out, size_t bytes) {
  if (bytes == 0)
    return caf::none;
  auto* mine = static_cast<char*>(out) + bytes * static_cast<size_t>(opts_.rank);
  if (opts_.size == 1) {
    if (in != mine)
      std::memmove(mine, in, bytes);
    return caf::none;
  }
  return guarded("all_gather of " + std::to_string(bytes) + " bytes per rank", [&] {
    gloo::AllgatherOptions o(ctx_);
    if (in != mine) // else already in place: Gloo sends this rank's part of the output
      o.setInput(const_cast<char*>(static_cast<const char*>(in)), bytes);
    o.setOutput(static_cast<char*>(out), bytes * static_cast<size_t>(opts_.size));
    o.setTimeout(opts_.timeout);
    gloo::allgather(o);
  });
}

caf::error gloo_collective::broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= opts_.size)
    return make_error(errc::invalid_argument, who() + ": broadcast from rank "
                                                + std::to_string(root) + ": no such rank");
  if (opts_.size == 1 || bytes == 0)
    return caf::none;
  return guarded("broadcast of " + std::to_string(bytes) + " bytes from rank "
                   + std::to_string(root),
                 [&] {
                   gloo::BroadcastOptions o(ctx_);
                   o.setOutput(static_cast<char*>(data), bytes);
                   o.setRoot(root);
                   o.setTimeout(opts_.timeout);
                   gloo::broadcast(o);
                 });
}

caf::error gloo_collective::send(const void* data, size_t bytes, int peer, uint32_t tag) {
  auto what = "send of " + std::to_string(bytes) + " bytes to rank " + std::to_string(peer)
              + " (tag " + std::to_string(tag) + ")";
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument, who() + ": " + what + ": no such peer");
  if (bytes == 0)
    return caf::none;
  return guarded(what, [&] {
    // Gloo only reads from the buffer on send; the cast is its API's, not a write.
    auto buf = ctx_->createUnboundBuffer(const_cast<void*>(data), bytes);
    buf->send(peer, gloo::Slot::build(p2p_slot_prefix, tag));
    buf->waitSend(opts_.timeout);
  });
}

caf::error gloo_collective::recv(void* data, size_t bytes, int peer, uint32_t tag) {
  auto what = "recv of " + std::to_string(bytes) + " bytes from rank " + std::to_string(peer)
              + " (tag " + std::to_string(tag) + ")";
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument, who() + ": " + what + ": no such peer");
  if (bytes == 0)
    return caf::none;
  return guarded(what, [&] {
    auto buf = ctx_->createUnboundBuffer(data, bytes);
    buf->recv(peer, gloo::Slot::build(p2p_slot_prefix, tag));
    buf->waitRecv(opts_.timeout);
  });
}

caf::expected<std::unique_ptr<gloo_collective>>
make_gloo_collective(const gloo_options& opts) {
  if (auto err = validate(opts))
    return err;
  auto who = "gloo group '" + opts.group + "' rank " + std::to_string(opts.rank) + "/"
             + std::to_string(opts.size);
  auto deadline = clock_type::now() + opts.timeout;
  rendezvous_client_options co;
  co.generation = opts.generation;
  auto client = rendezvous_client::connect(opts.store, opts.timeout, co);
  if (!client)
    return make_error(code_of(client.error()), who + ": " + context_text(client.error()));
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline
                                                                         - clock_type::now());
  gloo_store_adapter store(**client, opts.group,
                           std::max(remaining, std::chrono::milliseconds{1}));
  std::shared_ptr<gloo::transport::Device> dev;
  std::shared_ptr<watched_device> watched;
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = opts.bind_host;
    watched = std::make_shared<watched_device>(gloo::transport::tcp::CreateDevice(attr));
    dev = watched;
  } catch (const std::exception& e) {
    return make_error(errc::transport_failed, who + ": creating the Gloo device (binding "
                                                + opts.bind_host + ") failed: " + e.what());
  }
  mesh_watch watch(opts, deadline, store, *watched);
  if (auto err = watch.start())
    return make_error(code_of(err), who + ": " + context_text(err));
  auto ctx = std::make_shared<gloo::rendezvous::Context>(opts.rank, opts.size);
  ctx->setTimeout(opts.timeout);
  std::string failure;
  try {
    ctx->connectFullMesh(store, dev);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  watch.stop(**client);
  // A watch that gave up explains best why (the generation was superseded, or the
  // deadline passed while a pair waited for its peer); then a store failure, which
  // carries our own error and code; the rest is Gloo's.
  if (auto err = watch.why())
    return make_error(code_of(err), who + ": rendezvous abandoned: " + context_text(err));
  if (failure.empty())
    return std::unique_ptr<gloo_collective>(new gloo_collective(opts, std::move(ctx)));
  if (auto& err = store.last_error())
    return make_error(code_of(err), who + ": rendezvous failed: " + context_text(err));
  return make_error(classify(failure), who + ": connecting the full mesh (binding "
                                         + opts.bind_host + ") failed: " + failure);
}

} // namespace cafex
