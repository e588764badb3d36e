// GET /openapi.json: the OpenAPI 3.0 description of every route of cafex-serve, with the
// server's limits (vocabulary, length limit, max_tokens bound, choices) written into the
// schemas so that a schema-driven client or fuzzer (schemathesis) knows what is valid.
#pragma once

#include <string>

#include "completion_request.hpp"

namespace cafex::serve {

/// The document; `api_key`: whether routes other than /health need a bearer key.
std::string openapi_document(const request_limits& limits, bool api_key);

} // namespace cafex::serve
