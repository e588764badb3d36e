#include "transport/link_handshake.hpp"

#include <array>

namespace cafex::handshake {

namespace {

// Splits `line` into exactly N non-empty fields separated by single spaces; nullopt for
// any other shape (more or fewer fields, doubled, leading or trailing spaces, too long).
template <size_t N>
std::optional<std::array<std::string_view, N>> fields(std::string_view line) {
  if (line.size() >= max_line_length) // the '\n' the reader stripped took one byte
    return std::nullopt;
  std::array<std::string_view, N> out;
  for (size_t i = 0; i < N; ++i) {
    auto sp = i + 1 < N ? line.find(' ') : std::string_view::npos;
    if (i + 1 < N && sp == std::string_view::npos)
      return std::nullopt;
    out[i] = line.substr(0, sp);
    if (out[i].empty())
      return std::nullopt;
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  }
  // The last field took the rest of the line: it must not hold another separator.
  if (out[N - 1].find(' ') != std::string_view::npos)
    return std::nullopt;
  return out;
}

// Decimal 0..65535 as std::to_string writes it: digits only, no sign, no leading zero.
std::optional<uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0'))
    return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(v);
}

} // namespace

bool is_hex_field(std::string_view s) {
  if (s.size() != hex_length)
    return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

std::optional<hello> parse_hello(std::string_view line) {
  auto f = fields<4>(line);
  if (!f || (*f)[0] != magic || (*f)[1] != version || !is_hex_field((*f)[3]))
    return std::nullopt;
  auto target = parse_port((*f)[2]);
  if (!target)
    return std::nullopt;
  return hello{*target, std::string((*f)[3])};
}

std::optional<challenge> parse_challenge(std::string_view line) {
  auto f = fields<3>(line);
  if (!f || (*f)[0] != "CHALLENGE" || !is_hex_field((*f)[1]) || !is_hex_field((*f)[2]))
    return std::nullopt;
  return challenge{std::string((*f)[1]), std::string((*f)[2])};
}

std::optional<std::string> parse_auth(std::string_view line) {
  auto f = fields<2>(line);
  if (!f || (*f)[0] != "AUTH" || !is_hex_field((*f)[1]))
    return std::nullopt;
  return std::string((*f)[1]);
}

std::optional<reply> parse_reply(std::string_view line) {
  constexpr std::string_view refused = "REFUSED";
  if (line.size() >= max_line_length)
    return std::nullopt;
  if (line == "OK")
    return reply{true, {}};
  if (line.substr(0, refused.size()) != refused)
    return std::nullopt;
  auto rest = line.substr(refused.size());
  if (!rest.empty() && rest[0] != ' ')
    return std::nullopt; // "REFUSEDX" is not a refusal, it is noise
  reply r;
  if (!rest.empty())
    rest.remove_prefix(1);
  r.why.reserve(rest.size());
  for (char c : rest)
    r.why += (c >= 0x20 && c < 0x7f) ? c : '?';
  return r;
}

} // namespace cafex::handshake
