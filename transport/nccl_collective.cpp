#include "transport/nccl_collective.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/error.hpp"

namespace cafex {

namespace {

using clock_type = std::chrono::steady_clock;

std::chrono::milliseconds remaining(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline
                                                                    - clock_type::now());
  return std::max(left, std::chrono::milliseconds{1});
}

// Polls a nonblocking communicator until its pending call (init, enqueue, finalize)
// leaves ncclInProgress. errc::timeout when `deadline` passes first.
caf::error poll_comm(ncclComm_t comm, clock_type::time_point deadline, const char* what) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    if (auto err = CAFEX_CHECK(ncclCommGetAsyncError(comm, &state)))
      return err;
    if (state == ncclSuccess)
      return caf::none;
    if (state != ncclInProgress)
      return check_call(state, what, __FILE__, __LINE__);
    if (clock_type::now() >= deadline)
      return make_error(errc::timeout,
                        fmt::format("{} still in progress at the deadline", what));
    std::this_thread::sleep_for(std::chrono::microseconds{200});
  }
}

} // namespace

nccl_collective::nccl_collective(nccl_options opts, int device)
  : opts_(std::move(opts)), device_(device) {}

nccl_collective::~nccl_collective() {
  watchdog_.reset(); // joined: nothing else touches comm_ from here on
  if (comm_ == nullptr)
    return;
  cudaSetDevice(device_);
  // Finalize flushes outstanding work; bounded, because a dead peer could stall it.
  auto deadline = clock_type::now()
                  + std::min(opts_.op_timeout, std::chrono::milliseconds{10000});
  auto err = CAFEX_CHECK(ncclCommFinalize(comm_));
  if (!err)
    err = poll_comm(comm_, deadline, "ncclCommFinalize");
  if (err)
    ncclCommAbort(comm_);
  else
    ncclCommDestroy(comm_);
  comm_ = nullptr;
}

std::string nccl_collective::who() const {
  return fmt::format("nccl group '{}' rank {}/{} (GPU {})", opts_.group, opts_.rank,
                     opts_.size, device_);
}

void nccl_collective::abort_locked() {
  if (comm_ != nullptr) {
    cudaSetDevice(device_);
    ncclCommAbort(comm_); // releases kernels waiting on peers; nothing to do if it fails
    comm_ = nullptr;
  }
}

void nccl_collective::abort() {
  if (watchdog_) {
    auto guard = watchdog_->guard();
    abort_locked();
  } else {
    abort_locked();
  }
  broken_ = true;
}

void nccl_collective::enqueued() {
  if (watchdog_)
    watchdog_->arm(clock_type::now() + opts_.op_timeout);
}

caf::error nccl_collective::fail(const char* what, const caf::error& err) {
  abort();
  return with_context(fmt::format("{}: {} failed, communicator aborted (recreate the group "
                                  "under a new name)",
                                  who(), what),
                      err);
}

caf::error nccl_collective::usable(const char* what) {
  if (watchdog_ && watchdog_->fired()) {
    broken_ = true;
    return make_error(errc::transport_failed,
                      fmt::format("{}: {} on a broken group: {}; recreate the group under "
                                  "a new name",
                                  who(), what, describe(watchdog_->failure())));
  }
  if (broken_ || comm_ == nullptr)
    return make_error(errc::transport_failed,
                      fmt::format("{}: {} on a broken group: an earlier operation failed; "
                                  "recreate the group under a new name",
                                  who(), what));
  if (auto err = CAFEX_CHECK(cudaSetDevice(device_)))
    return with_context(who(), err);
  return caf::none;
}

caf::error nccl_collective::settle(const char* what) {
  return poll_comm(comm_, clock_type::now() + opts_.op_timeout, what);
}

template <class Enqueue>
caf::error nccl_collective::locked_enqueue(const char* what, bool empty, Enqueue&& enqueue) {
  caf::error err;
  {
    auto guard = watchdog_->guard();
    if (auto e = usable(what))
      return e;
    if (empty)
      return caf::none;
    err = check_call(enqueue(), what, __FILE__, __LINE__);
    if (!err)
      err = settle(what); // ncclInProgress: NCCL still accepting it
  }
  if (err)
    return fail(what, err); // aborts (takes the guard itself)
  enqueued();
  return caf::none;
}

caf::error nccl_collective::enqueue_all_reduce_sum(int64_t* data, size_t count,
                                                   cudaStream_t stream) {
  return enqueue_all_reduce(data, count, ncclInt64, stream);
}

caf::error nccl_collective::enqueue_all_reduce_sum_f32(float* data, size_t count,
                                                       cudaStream_t stream) {
  return enqueue_all_reduce(data, count, ncclFloat32, stream);
}

caf::error nccl_collective::enqueue_all_reduce_sum_bf16(void* data, size_t count,
                                                        cudaStream_t stream) {
  return enqueue_all_reduce(data, count, ncclBfloat16, stream);
}

caf::error nccl_collective::enqueue_all_reduce(void* data, size_t count, ncclDataType_t type,
                                               cudaStream_t stream) {
  return locked_enqueue("ncclAllReduce", count == 0, [&] {
    return ncclAllReduce(data, data, count, type, ncclSum, comm_, stream);
  });
}

caf::error nccl_collective::enqueue_all_gather(const void* send, void* recv, size_t bytes,
                                               cudaStream_t stream) {
  return locked_enqueue("ncclAllGather", bytes == 0, [&] {
    return ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream);
  });
}

caf::error nccl_collective::enqueue_send(const void* data, size_t bytes, int peer,
                                         cudaStream_t stream) {
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: send to peer {}: pick another rank of the group", who(),
                                  peer));
  return locked_enqueue("ncclSend", bytes == 0,
                        [&] { return ncclSend(data, bytes, ncclUint8, peer, comm_, stream); });
}

caf::error nccl_collective::enqueue_recv(void* data, size_t bytes, int peer,
                                         cudaStream_t stream) {
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: recv from peer {}: pick another rank of the group",
                                  who(), peer));
  return locked_enqueue("ncclRecv", bytes == 0,
                        [&] { return ncclRecv(data, bytes, ncclUint8, peer, comm_, stream); });
}

caf::error nccl_collective::wait(cudaStream_t stream) {
  {
    auto guard = watchdog_->guard();
    if (auto err = usable("wait"))
      return err;
  }
  // Only the stream is polled here: the watchdog probes the communicator and aborts it
  // on an error or at the deadline, which ends kernels stuck on a dead peer.
  auto aborted = [this]() -> caf::error {
    return watchdog_->fired() ? watchdog_->failure() : caf::none;
  };
  auto err = wait_stream(stream, opts_.op_timeout + 4 * opts_.watchdog_period,
                         "the group's operations", aborted);
  if (!err && watchdog_->fired())
    err = watchdog_->failure(); // finished as the watchdog gave up: trust neither
  if (err)
    return fail("waiting for the stream", err);
  watchdog_->disarm();
  return caf::none;
}

caf::error nccl_collective::all_reduce_sum(int64_t* data, size_t count) {
  if (auto err = usable("all_reduce_sum"))
    return err;
  if (count == 0)
    return caf::none;
  const size_t bytes = count * sizeof(int64_t);
  // Pinned staging: a copy to pageable memory would block outside our deadline.
  if (auto err = staging_.reserve(bytes))
    return with_context(who(), err);
  if (auto err = host_staging_.reserve(bytes))
    return with_context(who(), err);
  std::memcpy(host_staging_.as<int64_t>(), data, bytes);
  auto s = stream_.get();
  if (auto err = CAFEX_CHECK(cudaMemcpyAsync(staging_.data(), host_staging_.as<void>(), bytes,
                                             cudaMemcpyHostToDevice, s)))
    return fail("staging the input", err);
  if (auto err = enqueue_all_reduce_sum(staging_.as<int64_t>(), count, s))
    return err;
  if (auto err = CAFEX_CHECK(cudaMemcpyAsync(host_staging_.as<void>(), staging_.data(), bytes,
                                             cudaMemcpyDeviceToHost, s)))
    return fail("staging the result", err);
  if (auto err = wait(s))
    return err;
  std::memcpy(data, host_staging_.as<int64_t>(), bytes);
  return caf::none;
}

caf::error nccl_collective::send(const void* data, size_t bytes, int peer) {
  if (auto err = enqueue_send(data, bytes, peer, stream_.get()))
    return err;
  return wait(stream_.get());
}

caf::error nccl_collective::recv(void* data, size_t bytes, int peer) {
  if (auto err = enqueue_recv(data, bytes, peer, stream_.get()))
    return err;
  return wait(stream_.get());
}

caf::expected<std::unique_ptr<nccl_collective>>
make_nccl_collective(kv_store& store, const nccl_options& opts) {
  const auto deadline = clock_type::now() + opts.timeout;
  if (opts.size < 1 || opts.rank < 0 || opts.rank >= opts.size || opts.group.empty())
    return make_error(errc::invalid_argument,
                      fmt::format("nccl group '{}': rank {} of {} is out of range (or the "
                                  "group has no name): ranks lie in [0, size)",
                                  opts.group, opts.rank, opts.size));
  int device = opts.device;
  if (auto err = device >= 0 ? CAFEX_CHECK(cudaSetDevice(device))
                             : CAFEX_CHECK(cudaGetDevice(&device)))
    return with_context(fmt::format("nccl group '{}' rank {}/{}: selecting GPU {}", opts.group,
                                    opts.rank, opts.size, opts.device),
                        err);
  std::unique_ptr<nccl_collective> self{new nccl_collective(opts, device)};
  if (auto err = self->stream_.create())
    return with_context(self->who(), err);
  // Rendezvous: rank 0 publishes the unique id, the others fetch it.
  const std::string key = opts.group + "/nccl_unique_id";
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (opts.rank == 0) {
    if (auto err = CAFEX_CHECK(ncclGetUniqueId(&id)))
      return with_context(self->who(), err);
    std::vector<char> value(id.internal, id.internal + sizeof id.internal);
    if (auto err = store.set(key, value, remaining(deadline)))
      return with_context(self->who() + ": publishing the NCCL unique id", err);
  } else {
    auto value = store.get(key, remaining(deadline));
    if (!value)
      return with_context(self->who()
                            + ": waiting for rank 0's NCCL unique id (did rank 0 "
                              "start?)",
                          value.error());
    if (value->size() != sizeof id.internal)
      return make_error(errc::transport_failed,
                        fmt::format("{}: the NCCL unique id under '{}' has {} bytes, not {}: "
                                    "another program uses this group name",
                                    self->who(), key, value->size(), sizeof id.internal));
    std::memcpy(id.internal, value->data(), sizeof id.internal);
  }
  // Nonblocking init: NCCL connects in the background while we poll against the deadline.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = self->opts_.group.c_str();
  auto r = ncclCommInitRankConfig(&self->comm_, opts.size, id, opts.rank, &config);
  caf::error err = CAFEX_CHECK(r);
  if (!err && self->comm_ == nullptr)
    err = make_error(errc::transport_failed,
                     "ncclCommInitRankConfig returned no communicator");
  if (!err)
    err = poll_comm(self->comm_, deadline, "ncclCommInitRankConfig");
  if (!err) {
    auto* raw = self.get();
    comm_watchdog::hooks hooks;
    hooks.probe = [raw]() -> caf::error {
      if (raw->comm_ == nullptr)
        return caf::none;
      ncclResult_t state = ncclSuccess;
      if (auto e = CAFEX_CHECK(ncclCommGetAsyncError(raw->comm_, &state)))
        return e;
      if (state == ncclSuccess || state == ncclInProgress)
        return caf::none;
      return check_call(state, "ncclCommGetAsyncError", __FILE__, __LINE__);
    };
    hooks.abort = [raw] { raw->abort_locked(); };
    self->watchdog_ = std::make_unique<comm_watchdog>(self->who(), std::move(hooks),
                                                      opts.watchdog_period);
  }
  if (err) {
    self->abort();
    auto what =
      code_of(err) == errc::timeout
        ? fmt::format("communicator not ready within {} ms: check that all {} ranks "
                      "of the group started and can reach each other (NCCL_DEBUG=INFO "
                      "tells more)",
                      opts.timeout.count(), opts.size)
        : std::string{"creating the communicator failed"};
    return with_context(self->who() + ": " + what, err);
  }
  return self;
}

} // namespace cafex
