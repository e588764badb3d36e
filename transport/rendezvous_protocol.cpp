#include "transport/rendezvous_protocol.hpp"

#include <charconv>
#include <cstring>

namespace cafex::rdzv {

writer& writer::u8(uint8_t x) {
  buf_.push_back(static_cast<char>(x));
  return *this;
}

writer& writer::u32(uint32_t x) {
  for (int shift = 24; shift >= 0; shift -= 8)
    buf_.push_back(static_cast<char>((x >> shift) & 0xff));
  return *this;
}

writer& writer::i64(int64_t x) {
  auto u = static_cast<uint64_t>(x);
  for (int shift = 56; shift >= 0; shift -= 8)
    buf_.push_back(static_cast<char>((u >> shift) & 0xff));
  return *this;
}

writer& writer::str(const void* data, size_t size) {
  u32(static_cast<uint32_t>(size));
  auto p = static_cast<const char*>(data);
  buf_.insert(buf_.end(), p, p + size);
  return *this;
}

std::vector<char> writer::frame() const {
  writer out;
  out.buf_.reserve(frame_header_size + buf_.size());
  out.u32(static_cast<uint32_t>(buf_.size()));
  out.buf_.insert(out.buf_.end(), buf_.begin(), buf_.end());
  return std::move(out.buf_);
}

uint32_t decode_length(const char* header) {
  auto b = reinterpret_cast<const unsigned char*>(header);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8)
         | uint32_t{b[3]};
}

std::optional<uint8_t> reader::u8() {
  if (!has(1))
    return std::nullopt;
  return static_cast<uint8_t>(data_[pos_++]);
}

std::optional<uint32_t> reader::u32() {
  if (!has(4))
    return std::nullopt;
  auto x = decode_length(data_ + pos_);
  pos_ += 4;
  return x;
}

std::optional<int64_t> reader::i64() {
  if (!has(8))
    return std::nullopt;
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i)
    u = (u << 8) | static_cast<unsigned char>(data_[pos_ + i]);
  pos_ += 8;
  return static_cast<int64_t>(u);
}

std::optional<std::vector<char>> reader::bytes() {
  auto n = u32();
  if (!n || !has(*n))
    return std::nullopt;
  std::vector<char> out(data_ + pos_, data_ + pos_ + *n);
  pos_ += *n;
  return out;
}

std::optional<std::string> reader::str() {
  auto n = u32();
  if (!n || !has(*n))
    return std::nullopt;
  std::string out(data_ + pos_, *n);
  pos_ += *n;
  return out;
}

namespace {

std::optional<std::vector<std::string>> read_keys(reader& r) {
  auto n = r.u32();
  // Each key takes at least its 4-byte length: a count beyond that is a lie, refused
  // before the vector below reserves room for it; so is one beyond the per-request bound.
  if (!n || *n > r.remaining() / 4 || *n > max_keys_per_request)
    return std::nullopt;
  std::vector<std::string> keys;
  keys.reserve(*n);
  for (uint32_t i = 0; i < *n; ++i) {
    auto k = r.str();
    if (!k)
      return std::nullopt;
    keys.push_back(std::move(*k));
  }
  return keys;
}

} // namespace

std::optional<request> decode_request(const char* data, size_t size, std::string& why) {
  reader r(data, size);
  auto code = r.u8();
  auto wait_ms = r.u32();
  auto generation = r.u32();
  if (!code || !wait_ms || !generation) {
    why = "truncated request header";
    return std::nullopt;
  }
  request req;
  req.op = static_cast<op>(*code);
  req.wait_ms = *wait_ms;
  req.generation = *generation;
  auto malformed = [&why](const char* what) {
    why = std::string("malformed ") + what + " request";
    return std::nullopt;
  };
  switch (req.op) {
    case op::set: {
      auto key = r.str();
      auto value = r.bytes();
      if (!key || !value || !r.done())
        return malformed("set");
      req.keys.push_back(std::move(*key));
      req.value = std::move(*value);
      return req;
    }
    case op::get:
    case op::erase: {
      auto key = r.str();
      if (!key || !r.done())
        return malformed(to_string(req.op));
      req.keys.push_back(std::move(*key));
      return req;
    }
    case op::add: {
      auto key = r.str();
      auto delta = r.i64();
      if (!key || !delta || !r.done())
        return malformed("add");
      req.keys.push_back(std::move(*key));
      req.delta = *delta;
      return req;
    }
    case op::check:
    case op::wait: {
      auto keys = read_keys(r);
      if (!keys || !r.done())
        return malformed("check/wait");
      req.keys = std::move(*keys);
      return req;
    }
  }
  why = "unknown op " + std::to_string(*code);
  return std::nullopt;
}

std::optional<int64_t> add_counter(const std::vector<char>* stored, int64_t delta,
                                   std::string& why) {
  int64_t value = 0;
  if (stored) {
    const char* end = stored->data() + stored->size();
    auto [last, err] = std::from_chars(stored->data(), end, value);
    if (err != std::errc{} || last != end) {
      why = "holds a value that is not an integer";
      return std::nullopt;
    }
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(value, delta, &sum)) { // a signed overflow would be UB
    why = "holds " + std::to_string(value) + ", and adding " + std::to_string(delta)
          + " would overflow a 64-bit integer";
    return std::nullopt;
  }
  return sum;
}

const char* to_string(op x) {
  switch (x) {
    case op::set: return "set";
    case op::get: return "get";
    case op::add: return "add";
    case op::check: return "check";
    case op::wait: return "wait";
    case op::erase: return "erase";
  }
  return "unknown";
}

} // namespace cafex::rdzv
