#include "transport/rendezvous_protocol.hpp"

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
