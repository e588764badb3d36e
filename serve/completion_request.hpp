// POST /v1/completions bodies: parsing and validation, with messages that say exactly
// what is wrong. Pure logic (no sockets, no executor), unit-tested in
// tests/unit/test_serve_request.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace cafex::serve {

/// What the service accepts; every field has its default here.
struct request_limits {
  int vocab_size = 512;        ///< token ids must be in [0, vocab_size)
  int max_seq_len = 4096;      ///< prompt plus generated tokens, per request
  int max_tokens_limit = 1024; ///< upper bound of max_tokens
  int default_max_tokens = 16; ///< when max_tokens is absent (OpenAI's default)
};

/// A valid completion request.
struct completion_request {
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  bool stream = false;
};

/// Why a body was refused (the 400's message).
struct request_error {
  std::string message;
};

/// Parses a JSON body: {"prompt": [ids...], "max_tokens": N, "stream": bool}. Unknown
/// fields are ignored (OpenAI clients send many).
std::variant<completion_request, request_error>
parse_completion_request(const std::string& body, const request_limits& limits);

} // namespace cafex::serve
