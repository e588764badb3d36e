#include "transport/gloo_mesh_watch.hpp"

#include <algorithm>

#include "runtime/defaults.hpp"
#include "runtime/error.hpp"

namespace cafex {

watched_device::watched_device(std::shared_ptr<gloo::transport::Device> inner)
  : inner_(std::move(inner)) {}

std::string watched_device::str() const {
  return inner_->str();
}

const std::string& watched_device::getPCIBusID() const {
  return inner_->getPCIBusID();
}

int watched_device::getInterfaceSpeed() const {
  return inner_->getInterfaceSpeed();
}

bool watched_device::hasGPUDirect() const {
  return inner_->hasGPUDirect();
}

std::shared_ptr<gloo::transport::Context> watched_device::createContext(int rank, int size) {
  auto ctx = inner_->createContext(rank, size);
  std::lock_guard<std::mutex> guard{mtx_};
  created_ = ctx;
  return ctx;
}

std::shared_ptr<gloo::transport::Context> watched_device::created() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return created_;
}

mesh_watch::mesh_watch(const gloo_options& opts, clock_type::time_point deadline,
                       gloo_store_adapter& store, watched_device& dev)
  : opts_(opts),
    deadline_(deadline + rendezvous_client_options{}.reply_grace),
    store_(store),
    dev_(dev),
    done_key_(opts.group + "/cafex_connected_" + std::to_string(opts.rank)),
    own_key_(std::to_string(opts.rank)) {}

mesh_watch::~mesh_watch() {
  finished_ = true;
  if (thread_.joinable())
    thread_.join();
}

caf::error mesh_watch::start() {
  rendezvous_client_options co;
  co.generation = opts_.generation;
  auto c = rendezvous_client::connect(opts_.store, time_left(), co);
  if (!c)
    return c.error();
  client_ = std::move(*c);
  // Gloo publishes this rank's pair addresses under its rank once every pair exists.
  store_.on_set([this](const std::string& key) {
    if (key == own_key_)
      published();
  });
  thread_ = std::thread([this] { run(); });
  return caf::none;
}

void mesh_watch::stop(rendezvous_client& main) {
  finished_ = true;
  // A failed set (the store is gone) leaves the watch to notice at its next poll.
  if (!why())
    static_cast<void>(main.set(done_key_, {'1'}, time_left()));
  if (thread_.joinable())
    thread_.join();
}

caf::error mesh_watch::why() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return why_;
}

std::chrono::milliseconds mesh_watch::time_left() const {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_
                                                                    - clock_type::now());
  return std::max(left, std::chrono::milliseconds{1});
}

void mesh_watch::run() {
  while (!finished_) {
    if (clock_type::now() >= deadline_) {
      abort(make_error(errc::timeout, "a pair still waited for its peer after "
                                        + std::to_string(opts_.timeout.count())
                                        + " ms: the peer may have died after it published "
                                          "its address"));
      return;
    }
    auto err = client_->wait({done_key_},
                             std::min(time_left(), defaults::rendezvous_watch_interval));
    if (!err)
      return; // this rank's rendezvous ended
    if (code_of(err) == errc::timeout)
      continue; // the poll: finished meanwhile, or the deadline
    // Fenced off (a newer generation started), or the store is gone.
    abort(std::move(err));
    return;
  }
}

void mesh_watch::abort(caf::error err) {
  std::lock_guard<std::mutex> guard{mtx_};
  why_ = err;
  store_.abandon(std::move(err));
  if (published_)
    close_pairs();
}

void mesh_watch::published() {
  std::lock_guard<std::mutex> guard{mtx_};
  published_ = true;
  if (why_)
    close_pairs(); // given up while Gloo was publishing
}

void mesh_watch::close_pairs() {
  // Every pair exists once this rank has published; closing one from this thread is safe
  // (Gloo locks the pair) and wakes a connect that waits on it.
  auto ctx = dev_.created();
  if (!ctx)
    return;
  for (int i = 0; i < opts_.size; ++i)
    if (i != opts_.rank)
      if (auto& pair = ctx->getPair(i))
        pair->close();
}

} // namespace cafex
