// The wire format of the rendezvous store: length-prefixed binary frames, shared by the
// server and the client so that both sides parse one definition.
//
//   frame    = u32 body_length (big-endian) , body
//   request  = u8 op , u32 wait_ms , u32 generation , op payload
//   response = u8 status , status/op payload
//   string   = u32 length , bytes          (keys and values)
//
//   op          payload                    ok-response payload
//   set   (1)   key , value                -
//   get   (2)   key                        value       (waits for the key up to wait_ms)
//   add   (3)   key , i64 delta            i64 new value
//   check (4)   u32 n , n keys             u8 all_present
//   wait  (5)   u32 n , n keys             -           (waits up to wait_ms)
//   erase (6)   key                        u8 existed
//
// Non-ok responses carry a string that says why. A frame whose length exceeds the
// server's limit, or whose body does not parse, closes that connection only. The server
// decodes a body with decode_request (pure: unit-tested and fuzzed, tests/fuzz/).
//
// `generation` is the rendezvous generation the request belongs to (a communicator
// generation; 0: none). Once the server is fenced at generation G (a recovery starts a
// new one), every request of a generation from 1 to G-1 is answered `superseded`, and
// so is every get/wait of such a generation that is blocked at that moment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cafex::rdzv {

enum class op : uint8_t { set = 1, get = 2, add = 3, check = 4, wait = 5, erase = 6 };

enum class status : uint8_t {
  ok = 0,
  timeout = 1,       ///< the key(s) did not appear within wait_ms
  bad_request = 2,   ///< well-framed but refused (value too large, add on non-number)
  shutting_down = 3, ///< the server stops; the client should give up or retry elsewhere
  superseded = 4,    ///< the request's generation was fenced off: a newer one started
};

/// Bytes of the length prefix.
constexpr size_t frame_header_size = 4;

/// Room for op, wait_ms and string lengths on top of a value of maximal size.
constexpr size_t frame_overhead = 1024;

/// Keys one check or wait may name. Gloo's connectFullMesh waits for one key per peer
/// rank, so this bounds a world of 65536 ranks; a request naming more is refused, which
/// caps what one frame of empty keys makes the server hold (about 2 MiB, not 8x the frame).
constexpr uint32_t max_keys_per_request = 65536;

/// Appends big-endian integers and length-prefixed strings to a byte buffer.
class writer {
public:
  writer& u8(uint8_t x);
  writer& u32(uint32_t x);
  writer& i64(int64_t x);
  writer& str(const void* data, size_t size);
  writer& str(const std::string& s) { return str(s.data(), s.size()); }
  writer& str(const std::vector<char>& v) { return str(v.data(), v.size()); }

  /// The body prefixed by its length, ready to send.
  std::vector<char> frame() const;

  const std::vector<char>& body() const { return buf_; }

private:
  std::vector<char> buf_;
};

/// Reads what `writer` wrote; every accessor fails (nullopt) instead of overrunning.
class reader {
public:
  reader(const char* data, size_t size) : data_(data), size_(size) {}

  std::optional<uint8_t> u8();
  std::optional<uint32_t> u32();
  std::optional<int64_t> i64();
  std::optional<std::string> str();
  std::optional<std::vector<char>> bytes();

  /// True when every byte was consumed; trailing garbage marks a malformed frame.
  bool done() const { return pos_ == size_; }

  size_t remaining() const { return size_ - pos_; }

private:
  bool has(size_t n) const { return size_ - pos_ >= n; }

  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

/// Decodes the 4-byte length prefix.
uint32_t decode_length(const char* header);

/// One request as the server reads it from a frame's body.
struct request {
  rdzv::op op = op::get;
  uint32_t wait_ms = 0;
  uint32_t generation = 0;       ///< 0: none (never superseded)
  std::vector<std::string> keys; ///< one for set, get, add, erase; n for check and wait
  std::vector<char> value;       ///< set
  int64_t delta = 0;             ///< add
};

/// Decodes a request body: nullopt, with `why` saying what is wrong, for a truncated
/// body, an unknown op, a field that overruns the body or trailing bytes. Every length
/// and count is checked against the bytes left before anything is allocated, so the
/// result holds at most 8 bytes per body byte (an empty key: 4 bytes on the wire, one
/// std::string in memory), whatever the lengths claim.
std::optional<request> decode_request(const char* data, size_t size, std::string& why);

/// The counter add leaves: the stored value (decimal text, as add writes it; nullptr when
/// the key is absent: 0) plus `delta`. nullopt, with `why`, when the stored bytes are not
/// a decimal int64 (a peer may have set any bytes) or the sum would overflow.
std::optional<int64_t> add_counter(const std::vector<char>* stored, int64_t delta,
                                   std::string& why);

const char* to_string(op x);

} // namespace cafex::rdzv
