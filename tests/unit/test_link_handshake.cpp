// The link handshake's line parsers (transport/link_handshake.hpp): what the honest side
// writes is accepted, and every hostile variation of it is refused. The fuzz target
// tests/fuzz/fuzz_link_handshake.cpp checks the same properties over random lines.
#include <doctest/doctest.h>

#include <string>

#include "transport/link_handshake.hpp"
#include "transport/link_security.hpp"

using namespace cafex;
using namespace cafex::handshake;
using namespace std::string_literals;

namespace {

const std::string nonce = make_nonce();
const std::string mac = server_mac("0123456789abcdef-token", nonce, nonce, 7);

std::string hello_line(const std::string& target, const std::string& n = nonce) {
  return "CAFEX-LINK 1 " + target + " " + n;
}

} // namespace

TEST_CASE("the lines the dialer and the front door write parse back to their fields") {
  REQUIRE(is_hex_field(nonce));
  REQUIRE(is_hex_field(mac));
  auto h = parse_hello(hello_line("0"));
  REQUIRE(h);
  CHECK(h->target == 0);
  CHECK(h->client_nonce == nonce);
  CHECK(parse_hello(hello_line("40123"))->target == 40123);
  CHECK(parse_hello(hello_line("65535"))->target == 65535);
  auto c = parse_challenge("CHALLENGE " + nonce + " " + mac);
  REQUIRE(c);
  CHECK(c->server_nonce == nonce);
  CHECK(c->server_mac == mac);
  CHECK(parse_auth("AUTH " + mac) == mac);
  auto ok = parse_reply("OK");
  REQUIRE(ok);
  CHECK(ok->ok);
  auto no = parse_reply("REFUSED wrong or missing cluster token");
  REQUIRE(no);
  CHECK_FALSE(no->ok);
  CHECK(no->why == "wrong or missing cluster token");
  CHECK(parse_reply("REFUSED")->why.empty());
}

TEST_CASE("a hello with a bad target is refused") {
  for (auto t : {"-1", "+1", "65536", "99999", "100000", "18446744073709551617", "080", "00",
                 "8x", "0x10", "1e3", " 1", "", "١"})
    CHECK_MESSAGE(!parse_hello(hello_line(t)), "target '" << t << "'");
}

TEST_CASE("a hello with a bad nonce, magic or version is refused") {
  CHECK_FALSE(parse_hello(hello_line("0", nonce.substr(0, 32)))); // the old minimum
  CHECK_FALSE(parse_hello(hello_line("0", nonce.substr(1))));
  CHECK_FALSE(parse_hello(hello_line("0", nonce + "0")));
  CHECK_FALSE(parse_hello(hello_line("0", std::string(64, 'A'))));
  CHECK_FALSE(parse_hello(hello_line("0", std::string(63, 'a') + "g")));
  CHECK_FALSE(parse_hello(hello_line("0", std::string(63, 'a') + '\0')));
  CHECK_FALSE(parse_hello("CAFEX-LINK 2 0 " + nonce));
  CHECK_FALSE(parse_hello("CAFEX-LINK 01 0 " + nonce));
  CHECK_FALSE(parse_hello("cafex-link 1 0 " + nonce));
  CHECK_FALSE(parse_hello("CAFEX-LINKS 1 0 " + nonce));
  CHECK_FALSE(parse_hello("CAFEX-LINK 1 0"));
  CHECK_FALSE(parse_hello(""));
}

TEST_CASE("fields are separated by exactly one space, with nothing around them") {
  CHECK_FALSE(parse_hello("CAFEX-LINK  1 0 " + nonce));
  CHECK_FALSE(parse_hello("CAFEX-LINK\t1 0 " + nonce));
  CHECK_FALSE(parse_hello(" " + hello_line("0")));
  CHECK_FALSE(parse_hello(hello_line("0") + " "));
  CHECK_FALSE(parse_hello(hello_line("0") + "\r")); // take_line strips it; here it is junk
  CHECK_FALSE(parse_hello(hello_line("0") + " extra"));
  CHECK_FALSE(parse_hello(hello_line("0") + '\0'));
  CHECK_FALSE(parse_challenge("CHALLENGE " + nonce + "  " + mac));
  CHECK_FALSE(parse_challenge("CHALLENGE " + nonce + " " + mac + " " + mac));
  CHECK_FALSE(parse_auth("AUTH " + mac + " "));
  CHECK_FALSE(parse_auth("AUTH  " + mac));
}

TEST_CASE("challenge and auth need the word and 64 lowercase hex characters") {
  CHECK_FALSE(parse_challenge("CHALLENGE " + nonce));
  CHECK_FALSE(parse_challenge("CHALLENGE " + nonce + " " + mac.substr(2)));
  CHECK_FALSE(parse_challenge("challenge " + nonce + " " + mac));
  CHECK_FALSE(parse_challenge("AUTH " + nonce + " " + mac));
  CHECK_FALSE(parse_challenge(hello_line("0")));
  CHECK_FALSE(parse_auth("AUTH"));
  CHECK_FALSE(parse_auth("AUTH "));
  CHECK_FALSE(parse_auth("AUTHX " + mac));
  CHECK_FALSE(parse_auth("AUTH " + std::string(64, 'F')));
  CHECK_FALSE(parse_auth("OK"));
}

TEST_CASE("a reply is OK or REFUSED, and the reason is made safe to print") {
  CHECK_FALSE(parse_reply(""));
  CHECK_FALSE(parse_reply("OK "));
  CHECK_FALSE(parse_reply("ok"));
  CHECK_FALSE(parse_reply("OKAY"));
  CHECK_FALSE(parse_reply("REFUSEDX"));
  CHECK_FALSE(parse_reply("refused why"));
  auto r = parse_reply("REFUSED \x1b[2Jcleared\x07\n"s + '\0' + "\xff");
  REQUIRE(r);
  CHECK_FALSE(r->ok);
  CHECK(r->why == "?[2Jcleared????");
}

TEST_CASE("a line of max_line_length bytes or more is refused whatever it holds") {
  // The reader's buffer holds max_line_length bytes, '\n' included: longer cannot come.
  auto fill = [](std::string line, size_t size) {
    line.resize(size, 'x');
    return line;
  };
  auto reason = fill("REFUSED ", max_line_length - 1);
  CHECK(parse_reply(reason));
  CHECK_FALSE(parse_reply(reason + "x"));
  CHECK_FALSE(parse_reply(fill("REFUSED ", 1 << 20)));
  CHECK_FALSE(parse_hello(hello_line("0") + std::string(max_line_length, ' ')));
  CHECK_FALSE(parse_hello(std::string(max_line_length * 4, 'a')));
}
