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

void nccl_collective::abort() {
  if (comm_ != nullptr) {
    cudaSetDevice(device_);
    ncclCommAbort(comm_); // releases kernels waiting on peers; nothing to do if it fails
    comm_ = nullptr;
  }
  broken_ = true;
}

caf::error nccl_collective::fail(const char* what, const caf::error& err) {
  abort();
  return with_context(fmt::format("{}: {} failed, communicator aborted (recreate the group "
                                  "under a new name)",
                                  who(), what),
                      err);
}

caf::error nccl_collective::usable(const char* what) {
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
  if (auto err = poll_comm(comm_, clock_type::now() + opts_.op_timeout, what))
    return fail(what, err);
  return caf::none;
}

caf::error nccl_collective::enqueue_all_reduce_sum(int64_t* data, size_t count,
                                                   cudaStream_t stream) {
  if (auto err = usable("all_reduce_sum"))
    return err;
  if (count == 0)
    return caf::none;
  if (auto err = CAFEX_CHECK(
        ncclAllReduce(data, data, count, ncclInt64, ncclSum, comm_, stream)))
    return fail("ncclAllReduce", err);
  return settle("ncclAllReduce");
}

caf::error nccl_collective::enqueue_send(const void* data, size_t bytes, int peer,
                                         cudaStream_t stream) {
  if (auto err = usable("send"))
    return err;
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: send to peer {}: pick another rank of the group", who(),
                                  peer));
  if (bytes == 0)
    return caf::none;
  if (auto err = CAFEX_CHECK(ncclSend(data, bytes, ncclUint8, peer, comm_, stream)))
    return fail("ncclSend", err);
  return settle("ncclSend");
}

caf::error nccl_collective::enqueue_recv(void* data, size_t bytes, int peer,
                                         cudaStream_t stream) {
  if (auto err = usable("recv"))
    return err;
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: recv from peer {}: pick another rank of the group",
                                  who(), peer));
  if (bytes == 0)
    return caf::none;
  if (auto err = CAFEX_CHECK(ncclRecv(data, bytes, ncclUint8, peer, comm_, stream)))
    return fail("ncclRecv", err);
  return settle("ncclRecv");
}

caf::error nccl_collective::wait(cudaStream_t stream) {
  if (auto err = usable("wait"))
    return err;
  auto async_error = [this]() -> caf::error {
    ncclResult_t state = ncclSuccess;
    if (auto err = CAFEX_CHECK(ncclCommGetAsyncError(comm_, &state)))
      return err;
    if (state == ncclSuccess || state == ncclInProgress)
      return caf::none;
    return check_call(state, "ncclCommGetAsyncError", __FILE__, __LINE__);
  };
  if (auto err = wait_stream(stream, opts_.op_timeout, "the group's operations", async_error))
    return fail("waiting for the stream", err);
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
