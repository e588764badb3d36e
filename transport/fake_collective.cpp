#include "transport/fake_collective.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "runtime/error.hpp"

namespace cafex {

class fake_collective_group::endpoint_impl final : public collective {
public:
  endpoint_impl(fake_collective_group& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size(); }
  caf::error all_reduce_sum(int64_t* data, size_t count) override {
    return group_.all_reduce(rank_, data, nullptr, count);
  }
  caf::error all_reduce_sum_f32(float* data, size_t count) override {
    return group_.all_reduce(rank_, nullptr, data, count);
  }
  const char* transport() const override { return "fake"; }

private:
  fake_collective_group& group_;
  int rank_;
};

fake_collective_group::fake_collective_group(int size, std::chrono::milliseconds deadline)
  : deadline_(deadline) {
  if (size < 1)
    throw std::invalid_argument("fake_collective_group: size must be >= 1");
  next_round_.assign(static_cast<size_t>(size), 0);
  for (int i = 0; i < size; ++i)
    endpoints_.push_back(std::make_unique<endpoint_impl>(*this, i));
}

fake_collective_group::~fake_collective_group() = default;

collective& fake_collective_group::endpoint(int rank) {
  return *endpoints_.at(static_cast<size_t>(rank));
}

void fake_collective_group::set_deadline(std::chrono::milliseconds deadline) {
  std::lock_guard<std::mutex> guard{mx_};
  deadline_ = deadline;
}

void fake_collective_group::fail_next(int count) {
  std::lock_guard<std::mutex> guard{mx_};
  fail_next_ = std::max(0, count);
}

void fake_collective_group::error_on_collective(bool on) {
  std::lock_guard<std::mutex> guard{mx_};
  error_on_ = on;
}

uint64_t fake_collective_group::calls() const {
  std::lock_guard<std::mutex> guard{mx_};
  return calls_;
}

void fake_collective_group::leave(uint64_t index, round& r) {
  // The last rank out forgets the round.
  if (++r.left == size())
    rounds_.erase(index);
}

caf::error fake_collective_group::all_reduce(int rank, int64_t* data, float* fdata,
                                             size_t count) {
  const bool f32 = fdata != nullptr;
  std::unique_lock<std::mutex> lock{mx_};
  ++calls_;
  const uint64_t index = next_round_[static_cast<size_t>(rank)]++;
  auto [it, created] = rounds_.try_emplace(index);
  round& r = it->second; // std::map nodes stay put while other rounds come and go
  if (created && (error_on_ || fail_next_ > 0)) {
    r.fail = true;
    if (!error_on_)
      --fail_next_;
  }
  auto fail = [&](errc code, const std::string& why) {
    leave(index, r);
    return make_error(code, "fake collective: all_reduce round " + std::to_string(index)
                              + " on rank " + std::to_string(rank) + " of "
                              + std::to_string(size()) + ": " + why);
  };
  if (r.fail)
    return fail(errc::transport_failed, "failure injected by the test");
  if (r.broken)
    return fail(errc::transport_failed, "the round was abandoned by another rank");
  if (r.arrived == 0) {
    r.count = count;
    r.f32 = f32;
    r.sum.assign(count, 0);
    r.parts.assign(static_cast<size_t>(size()), {});
  } else if (r.count != count || r.f32 != f32) {
    r.broken = true;
    cv_.notify_all();
    return fail(errc::transport_failed, "ranks passed buffers of different lengths or types ("
                                          + std::to_string(r.count) + " and "
                                          + std::to_string(count) + " elements)");
  }
  if (f32) {
    r.parts[static_cast<size_t>(rank)].assign(fdata, fdata + count);
  } else {
    for (size_t i = 0; i < count; ++i)
      r.sum[i] += data[i];
  }
  if (++r.arrived == size()) {
    if (f32) {
      // Rank order, as the shared-memory transport: the same bits on every run.
      r.fsum = r.parts[0];
      for (size_t p = 1; p < r.parts.size(); ++p)
        for (size_t i = 0; i < count; ++i)
          r.fsum[i] += r.parts[p][i];
    }
    cv_.notify_all();
  }
  const auto until = std::chrono::steady_clock::now() + deadline_;
  if (!cv_.wait_until(lock, until, [&] { return r.arrived == size() || r.broken; })) {
    r.broken = true;
    cv_.notify_all();
    return fail(errc::timeout,
                "not all ranks arrived within " + std::to_string(deadline_.count()) + " ms");
  }
  if (r.arrived != size())
    return fail(errc::transport_failed, "the round was abandoned by another rank");
  if (f32)
    std::copy(r.fsum.begin(), r.fsum.end(), fdata);
  else
    std::copy(r.sum.begin(), r.sum.end(), data);
  leave(index, r);
  return caf::none;
}

} // namespace cafex
