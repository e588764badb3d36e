// libFuzzer target: the bytes a peer sends the rendezvous server on one connection, read as
// the server reads them (transport/rendezvous_server.cpp): frames of a 4-byte length and a
// body, each body decoded by rdzv::decode_request, sets and adds applied to a small map
// with rdzv::add_counter as the server does. Invariants besides "no crash, no sanitizer
// report":
//  - a length above the server's limit is refused before anything is allocated for it;
//  - a refused body comes with a reason (the server logs it);
//  - a decoded request holds at most 8 bytes per body byte, whatever its lengths claim;
//  - a decoded request re-encodes to exactly its body (nothing is silently skipped);
//  - add returns the exact sum, or refuses when the stored bytes are not an integer or
//    the sum does not fit in 64 bits.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "transport/rendezvous_protocol.hpp"

using namespace cafex::rdzv;

namespace {

// rendezvous_server_options::max_value_size's default, plus the frame overhead: the
// limit the server's read_header applies before it sizes the body buffer.
constexpr size_t frame_limit = (size_t{64} << 20) + frame_overhead;

std::vector<char> encode(const request& r) {
  writer w;
  w.u8(static_cast<uint8_t>(r.op)).u32(r.wait_ms).u32(r.generation);
  switch (r.op) {
    case op::set: w.str(r.keys.at(0)).str(r.value); break;
    case op::get:
    case op::erase: w.str(r.keys.at(0)); break;
    case op::add: w.str(r.keys.at(0)).i64(r.delta); break;
    case op::check:
    case op::wait:
      w.u32(static_cast<uint32_t>(r.keys.size()));
      for (const auto& k : r.keys)
        w.str(k);
      break;
  }
  return w.body();
}

// Bytes the decoded request holds on the heap.
size_t footprint(const request& r) {
  const size_t inline_capacity = std::string().capacity(); // short strings: no heap
  size_t n = r.keys.capacity() * sizeof(std::string) + r.value.capacity();
  for (const auto& k : r.keys)
    if (k.capacity() > inline_capacity)
      n += k.capacity() + 1;
  return n;
}

void check_add(const std::vector<char>* stored, int64_t delta) {
  std::string why;
  auto before = add_counter(stored, 0, why); // adding 0 never overflows
  auto sum = add_counter(stored, delta, why);
  if (!before) {
    FUZZ_CHECK(!sum && !why.empty());
    return;
  }
  // __int128 holds any sum of two int64 values: the reference the result must match.
  auto exact = static_cast<__int128>(*before) + delta;
  if (exact < INT64_MIN || exact > INT64_MAX) {
    FUZZ_CHECK(!sum && !why.empty());
  } else {
    FUZZ_CHECK(sum && static_cast<__int128>(*sum) == exact);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  size_t left = size;
  std::map<std::string, std::vector<char>> store;
  while (left >= frame_header_size) {
    auto len = decode_length(p);
    p += frame_header_size;
    left -= frame_header_size;
    if (len > frame_limit)
      return 0; // refused: the server closes the connection, allocating nothing
    if (len > left)
      return 0; // truncated: the server waits for the rest
    std::string why;
    auto req = decode_request(p, len, why);
    if (!req) {
      FUZZ_CHECK(!why.empty());
      return 0; // refused: the server closes the connection
    }
    FUZZ_CHECK(footprint(*req) <= 8 * size_t{len});
    FUZZ_CHECK(encode(*req) == std::vector<char>(p, p + len));
    p += len;
    left -= len;
    switch (req->op) {
      case op::set: store[req->keys.front()] = req->value; break;
      case op::add: {
        auto i = store.find(req->keys.front());
        const auto* stored = i == store.end() ? nullptr : &i->second;
        check_add(stored, req->delta);
        std::string why_add;
        if (auto v = add_counter(stored, req->delta, why_add)) {
          auto text = std::to_string(*v);
          store[req->keys.front()] = std::vector<char>(text.begin(), text.end());
        }
        break;
      }
      case op::erase: store.erase(req->keys.front()); break;
      default: break;
    }
  }
  return 0;
}
