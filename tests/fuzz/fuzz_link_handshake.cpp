// libFuzzer target: one handshake line (transport/link_handshake.hpp) as a hostile peer of
// the front door (hello, auth) or of the dialer (challenge, reply) may send it. Beyond "no
// crash, no sanitizer report": a line any parser accepts is shorter than max_line_length
// and is exactly the line the honest side would write for the fields parsed, so nothing
// else (other separators, signs, leading zeros, upper-case hex, control bytes) gets in.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "transport/link_handshake.hpp"

using namespace cafex::handshake;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  int accepted = 0;
  if (auto h = parse_hello(line)) {
    ++accepted;
    FUZZ_CHECK(is_hex_field(h->client_nonce));
    FUZZ_CHECK(line == "CAFEX-LINK 1 " + std::to_string(h->target) + " " + h->client_nonce);
  }
  if (auto c = parse_challenge(line)) {
    ++accepted;
    FUZZ_CHECK(is_hex_field(c->server_nonce) && is_hex_field(c->server_mac));
    FUZZ_CHECK(line == "CHALLENGE " + c->server_nonce + " " + c->server_mac);
  }
  if (auto mac = parse_auth(line)) {
    ++accepted;
    FUZZ_CHECK(is_hex_field(*mac));
    FUZZ_CHECK(line == "AUTH " + *mac);
  }
  if (auto r = parse_reply(line)) {
    ++accepted;
    if (r->ok) {
      FUZZ_CHECK(line == "OK" && r->why.empty());
    } else {
      FUZZ_CHECK(line.substr(0, 7) == "REFUSED");
      FUZZ_CHECK(r->why.size() == (line.size() == 7 ? 0 : line.size() - 8));
      for (char c : r->why)
        FUZZ_CHECK(c >= 0x20 && c < 0x7f); // safe to print in the driver's log
    }
  }
  FUZZ_CHECK(accepted <= 1); // no line means two things
  if (accepted)
    FUZZ_CHECK(line.size() < max_line_length);
  return 0;
}
