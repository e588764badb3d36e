// The rendezvous server's request decoding and counter arithmetic
// (transport/rendezvous_protocol.hpp), without a socket: every request the client writes
// decodes to its fields, hostile bodies are refused with the reason the server logs, and
// the cases tests/fuzz/fuzz_rendezvous_request.cpp found stay fixed.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "transport/rendezvous_protocol.hpp"

using namespace cafex::rdzv;

namespace {

constexpr auto int64_max = std::numeric_limits<int64_t>::max();
constexpr auto int64_min = std::numeric_limits<int64_t>::min();

writer header(op o, uint32_t wait_ms = 0) {
  writer w;
  w.u8(static_cast<uint8_t>(o)).u32(wait_ms).u32(0); // generation 0: none
  return w;
}

std::optional<request> decode(const writer& w, std::string& why) {
  return decode_request(w.body().data(), w.body().size(), why);
}

// The reason a body is refused, or "" when it decodes.
std::string refusal(const writer& w) {
  std::string why;
  return decode(w, why) ? std::string() : why;
}

std::vector<char> text(const std::string& s) {
  return {s.begin(), s.end()};
}

} // namespace

TEST_CASE("every request the client writes decodes to its fields") {
  std::string why;
  auto set = decode(header(op::set).str("k").str(std::string("v\0w", 3)), why);
  REQUIRE(set);
  CHECK(set->op == op::set);
  CHECK(set->keys == std::vector<std::string>{"k"});
  CHECK(set->value == std::vector<char>{'v', '\0', 'w'});
  auto get = decode(header(op::get, 1500).str("k"), why);
  REQUIRE(get);
  CHECK(get->wait_ms == 1500);
  CHECK(get->keys == std::vector<std::string>{"k"});
  auto add = decode(header(op::add).str("n").i64(-7), why);
  REQUIRE(add);
  CHECK(add->delta == -7);
  auto wait = decode(header(op::wait, 10).u32(2).str("a").str(""), why);
  REQUIRE(wait);
  CHECK(wait->keys == std::vector<std::string>{"a", ""});
  auto none = decode(header(op::check).u32(0), why);
  REQUIRE(none);
  CHECK(none->keys.empty()); // check and wait may name no key at all
  CHECK(decode(header(op::erase).str("k"), why)->op == op::erase);
}

TEST_CASE("a truncated, unknown or overlong body is refused with the server's reason") {
  writer empty;
  CHECK(refusal(empty) == "truncated request header");
  writer short_header;
  short_header.u8(2).u8(0);
  CHECK(refusal(short_header) == "truncated request header");
  CHECK(refusal(header(static_cast<op>(0)).str("k")) == "unknown op 0");
  CHECK(refusal(header(static_cast<op>(99)).str("k")) == "unknown op 99");
  CHECK(refusal(header(op::set).str("k")) == "malformed set request");
  CHECK(refusal(header(op::get).str("k").u8(0)) == "malformed get request"); // trailing byte
  CHECK(refusal(header(op::erase)) == "malformed erase request");
  CHECK(refusal(header(op::add).str("n").u32(1)) == "malformed add request");
  CHECK(refusal(header(op::wait).u32(2).str("a")) == "malformed check/wait request");
}

TEST_CASE("lengths and counts that claim more than the body holds are refused") {
  // A string of 2 GiB announced with one byte behind it.
  CHECK(refusal(header(op::get).u32(0x7fffffff).u8('k')) == "malformed get request");
  CHECK(refusal(header(op::set).str("k").u32(0xffffffff)) == "malformed set request");
  // 4 billion keys announced: refused on the count, before room for them is reserved.
  CHECK(refusal(header(op::check).u32(0xffffffff).str("a")) == "malformed check/wait request");
  // The most keys the body can hold (empty ones, 4 bytes each) still decode.
  auto w = header(op::check).u32(1000);
  for (int i = 0; i < 1000; ++i)
    w.str("");
  std::string why;
  auto many = decode(w, why);
  REQUIRE(many);
  CHECK(many->keys.size() == 1000);
  CHECK(many->keys.capacity() == 1000); // reserved once, not grown by doubling
  CHECK(refusal(header(op::check).u32(1001).str("")) == "malformed check/wait request");
}

TEST_CASE("a check or wait names at most max_keys_per_request keys") {
  // A frame of empty keys held 8 bytes of vector per body byte: 64 MiB of frame became
  // 512 MiB of server memory. One key past the bound is refused however long the body.
  auto at_bound = header(op::wait).u32(max_keys_per_request);
  auto past = header(op::wait).u32(max_keys_per_request + 1);
  for (uint32_t i = 0; i <= max_keys_per_request; ++i) {
    if (i < max_keys_per_request)
      at_bound.str("");
    past.str("");
  }
  std::string why;
  auto ok = decode(at_bound, why);
  REQUIRE(ok);
  CHECK(ok->keys.size() == max_keys_per_request);
  CHECK(refusal(past) == "malformed check/wait request");
}

TEST_CASE("add counts from 0, parses only a decimal int64 and refuses to overflow") {
  std::string why;
  CHECK(add_counter(nullptr, 5, why) == 5);
  auto stored = text("41");
  CHECK(add_counter(&stored, 1, why) == 42);
  stored = text("-9");
  CHECK(add_counter(&stored, -1, why) == -10);
  for (auto bad : {"", "abc", " 1", "1 ", "+1", "1.0", "0x10", "9223372036854775808"}) {
    stored = text(bad);
    why.clear();
    CHECK_MESSAGE(!add_counter(&stored, 1, why), "stored '" << bad << "'");
    CHECK(why == "holds a value that is not an integer");
  }
  stored = text(std::to_string(int64_max));
  CHECK(add_counter(&stored, 0, why) == int64_max);
  CHECK_FALSE(add_counter(&stored, 1, why));
  CHECK(why.find("would overflow") != std::string::npos);
  stored = text(std::to_string(int64_min));
  CHECK(add_counter(&stored, 0, why) == int64_min);
  CHECK_FALSE(add_counter(&stored, -1, why));
  CHECK(add_counter(nullptr, int64_min, why) == int64_min);
}

TEST_CASE("fuzzer finding: two adds whose sum overflows int64 are refused, not UB") {
  // tests/fuzz/corpus/rendezvous_request/add_overflow_found: add "n" 0x5a00000000000005,
  // then add "n" 0x2c000000fffffffe. The server computed the sum with `+=` on int64_t
  // (undefined behaviour; UBSan: signed integer overflow) and stored the wrapped value.
  std::string why;
  auto first = add_counter(nullptr, 0x5a00000000000005, why);
  REQUIRE(first);
  auto stored = text(std::to_string(*first));
  CHECK_FALSE(add_counter(&stored, 0x2c000000fffffffe, why));
  CHECK(why
        == "holds 6485183463413514245, and adding 3170534141963796478 would overflow a "
           "64-bit integer");
}
