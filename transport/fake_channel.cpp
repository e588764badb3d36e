#include "transport/fake_channel.hpp"

#include <cstring>

#include "runtime/error.hpp"

namespace cafex {

class fake_channel_pair::end final : public p2p_channel {
public:
  explicit end(fake_channel_pair* pair) : pair_(pair) {}
  caf::error send(const void* data, size_t bytes, uint64_t tag) override {
    return pair_->push(data, bytes, tag);
  }
  caf::error recv(void* data, size_t bytes, uint64_t tag) override {
    return pair_->pop(data, bytes, tag);
  }
  const char* kind() const override { return "fake"; }

private:
  fake_channel_pair* pair_;
};

fake_channel_pair::fake_channel_pair(std::chrono::milliseconds deadline)
  : deadline_(deadline) {}

std::unique_ptr<p2p_channel> fake_channel_pair::upstream() {
  return std::make_unique<end>(this);
}

std::unique_ptr<p2p_channel> fake_channel_pair::downstream() {
  return std::make_unique<end>(this);
}

void fake_channel_pair::fail_next(int n) {
  std::lock_guard<std::mutex> guard{mtx_};
  fail_next_ = n;
}

size_t fake_channel_pair::sends() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return sends_;
}

bool fake_channel_pair::take_failure() {
  if (fail_next_ <= 0)
    return false;
  --fail_next_;
  return true;
}

caf::error fake_channel_pair::push(const void* data, size_t bytes, uint64_t tag) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (take_failure())
    return make_error(errc::transport_failed, "fake channel: send failed on purpose");
  auto p = static_cast<const char*>(data);
  queue_[tag].assign(p, p + bytes);
  ++sends_;
  cv_.notify_all();
  return caf::none;
}

caf::error fake_channel_pair::pop(void* data, size_t bytes, uint64_t tag) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (take_failure())
    return make_error(errc::transport_failed, "fake channel: recv failed on purpose");
  if (!cv_.wait_for(guard, deadline_, [&] { return queue_.count(tag) > 0; }))
    return make_error(errc::timeout,
                      "fake channel: nothing sent with tag " + std::to_string(tag));
  auto& buf = queue_[tag];
  if (buf.size() != bytes)
    return make_error(errc::transport_failed, "fake channel: expected " + std::to_string(bytes)
                                                + " bytes, the sender sent "
                                                + std::to_string(buf.size()));
  std::memcpy(data, buf.data(), bytes);
  queue_.erase(tag);
  return caf::none;
}

} // namespace cafex
